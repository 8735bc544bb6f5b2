"""One recovery policy for the driver: which failures a step survives, and what it does about them.

A generator or the reward actor that dies is restarted by Ray (``cluster.max_actor_restarts``); a
generator that answers from weights other than the last sync's (restarted since, so serving
``model.path``) is stale. Either way the policy waits for the actors, pushes the current weights
again and repeats the call. The learner is never restarted here: its death ends the step (a fresh
learner would silently lose the optimizer state; ``--resume`` restores it).

Every failure of one top-level call draws from ONE budget of ``run.step_retries``, however the calls
nest (``evaluate`` calls ``generate``; a batch generated ahead is collected inside a step): nested
retry loops would otherwise multiply into (R + 1)(R + 2) attempts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayError

from remax_ray.cluster.actors import Actors
from remax_ray.config import Config

log = logging.getLogger(__name__)
T = TypeVar("T")
RESTART_POLL_S = 1.0
"""How often a restarting actor is asked whether it is back (it answers "unavailable" at once)."""


class StaleWeights(RuntimeError):
    """A generator served weights other than the last sync's (it was restarted since)."""


RECOVERABLE = (RayActorError, GetTimeoutError, StaleWeights)


class Recovery:
    """``attempt(phase, call)`` runs ``call`` and recovers from what a step survives; ``counters``
    is the run state's (``actor_retries``, ``generator_resyncs``); ``resync`` pushes the weights."""

    def __init__(self, cfg: Config, actors: Actors, counters: dict[str, float], resync: Callable[[], object],
                 forget_peers: Callable[[], None], step: Callable[[], int]):
        self.cfg, self.actors, self.counters = cfg, actors, counters
        self._resync, self._forget_peers, self._step = resync, forget_peers, step
        self._depth = 0
        self._left = 0

    def learner_died(self, err: BaseException) -> bool:
        """Whether ``err`` comes of a learner rank's death: the group owns the dead actor, or (K > 1)
        a surviving rank failed in a collective and a rank is found dead."""
        learner = self.actors.learner
        if learner.owns(getattr(err, "actor_id", None)):
            return True
        return isinstance(err, RayError) and learner.world_size > 1 and learner.any_rank_dead()

    def attempt(self, phase: str, call: Callable[[], T], failed: BaseException | None = None) -> T:
        """``call()``, repeated after a recovery while the budget lasts. ``failed``: a failure that
        already happened (e.g. of calls started earlier), recovered from before the first call."""
        if self._depth == 0:
            self._left = self.cfg.run.step_retries
        self._depth += 1
        err = failed
        try:
            while True:
                if err is not None:
                    self._spend(phase, err)
                try:
                    if err is not None:
                        self.recover()  # inside: a recovery that fails is one more failure
                    return call()
                except RECOVERABLE as new:
                    err = new
        finally:
            self._depth -= 1

    def _spend(self, phase: str, err: BaseException) -> None:
        """Count ``err`` against the budget, or raise it: a learner death, or the budget spent."""
        if self.learner_died(err) or self._left <= 0:
            raise err
        self._left -= 1
        self.counters["generator_resyncs" if isinstance(err, StaleWeights) else "actor_retries"] += 1
        used = self.cfg.run.step_retries - self._left
        log.warning("step %d: %s failed (%s: %s); recovery %d of %d", self._step(), phase,
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "", used, self.cfg.run.step_retries)

    def recover(self) -> None:
        """Wait for the restartable actors to answer again, then push the current weights."""
        others = [*self.actors.generators, self.actors.reward]
        deadline = time.monotonic() + self.cfg.cluster.restart_timeout_s
        while True:  # a restarting actor answers "unavailable" at once rather than queueing the call
            try:
                ray.get([a.__ray_ready__.remote() for a in others], timeout=max(1.0, deadline - time.monotonic()))
                break
            except ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(RESTART_POLL_S)
        self._forget_peers()
        self._resync()
