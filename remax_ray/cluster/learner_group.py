"""The driver's handle on K learner ranks: the methods the trainer calls on one learner actor, with
the same names and ``.remote`` calls, fanned out to the ranks and gathered into one result, so the
trainer, repro and the failure handling never branch on K.

Each rank is a :class:`~remax_ray.cluster.shells.LearnerShell` in its own placement bundle. With K > 1
they are created first, then join one torch process group through a TCPStore that rank 0 hosts on
a port the OS picks (no bind-then-close race), then load and wrap their models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

RANK_PROBE_S = 5.0
"""How long a rank is given to answer whether it lives (a dead one fails at once)."""


@ray.remote(num_cpus=0)
def _first(*results: Any) -> Any:
    """Rank 0's result once every rank has returned. Ray resolves the arguments first, so a failed or
    dead rank fails this task with that rank's own error."""
    return results[0]


class _Method:
    def __init__(self, call: Callable[..., Any]):
        self._call = call

    def remote(self, *args: Any, **kwargs: Any) -> ray.ObjectRef:
        return self._call(*args, **kwargs)


class _Routed:
    """A method of the group, declared with how its calls reach the ranks (``route(group, name, ...)``),
    so a new shell method is either declared here or an AttributeError, never a silent default."""

    def __init__(self, route: Callable[..., ray.ObjectRef]):
        self.route = route

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, group: LearnerGroup | None, owner: type | None = None) -> Any:
        if group is None:
            return self
        return _Method(lambda *args, **kwargs: self.route(group, self.name, *args, **kwargs))


def _every_rank(group: LearnerGroup, name: str, *args: Any, **kwargs: Any) -> ray.ObjectRef:
    """Every rank runs it (collectives inside: a step, a checkpoint); rank 0's result, once all returned."""
    return group._all(name, None, *args, **kwargs)


def _rank0(group: LearnerGroup, name: str, *args: Any, **kwargs: Any) -> ray.ObjectRef:
    """Rank 0 alone: what every rank would answer alike, or what only rank 0 does."""
    return getattr(group.ranks[0], name).remote(*args, **kwargs)


def _gathering(group: LearnerGroup, name: str, *args: Any) -> ray.ObjectRef:
    """Whole weights: under FSDP2 every rank joins the gather and rank 0's result is the payload
    (not copied through a gathering task); otherwise rank 0 alone."""
    if not (group.world_size > 1 and group.strategy == "fsdp"):
        return getattr(group.ranks[0], name).remote(*args)
    return [getattr(a, name).remote(*args) for a in group.ranks][0]


class LearnerGroup:
    """K learner actors (rank 0 first) behind the one-actor interface."""

    def __init__(self, ranks: list[Any], strategy: str, joining: list[ray.ObjectRef] | None = None):
        self.ranks = ranks
        self.strategy = strategy
        self._joining = joining or []
        """The ranks' pending ``join`` calls: ready means joined (their errors surface there)."""

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    def owns(self, actor_id_hex: str | None) -> bool:
        """Whether an error's actor is one of the ranks."""
        return actor_id_hex is not None and any(a._actor_id.hex() == actor_id_hex for a in self.ranks)

    def any_rank_dead(self, timeout_s: float = RANK_PROBE_S) -> bool:
        """Whether a rank has died. With K > 1 a rank's death also fails the survivors (their
        collective lost its peer), and a gathered call may raise their error rather than the dead
        rank's, so an error alone does not tell. A busy rank (still waiting in a collective) does
        not answer within ``timeout_s`` and counts as alive."""
        for actor in self.ranks:
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=timeout_s)
            except RayActorError:
                return True
            except GetTimeoutError:
                continue
        return False

    def _all(self, name: str, per_rank: Callable[[int], tuple] | None = None, *args: Any, **kwargs: Any):
        refs = [getattr(a, name).remote(*(per_rank(r) if per_rank else args), **kwargs)
                for r, a in enumerate(self.ranks)]
        return refs[0] if len(refs) == 1 else _first.remote(*refs)

    @property
    def __ray_ready__(self) -> _Method:
        """Ready: every rank constructed and, with K > 1, joined the process group."""
        if self._joining:
            return _Method(lambda: _first.remote(*self._joining))
        return _Method(lambda: self._all("__ray_ready__"))

    @property
    def train_step(self) -> _Method:
        return _Method(self._train_step)

    save = _Routed(_every_rank)
    __ray_call__ = _Routed(_every_rank)
    export_bucket = _Routed(_gathering)
    export_bucket_shared = _Routed(_gathering)
    broadcast_weights = _Routed(_gathering)
    export_adapter = _Routed(_gathering)
    weight_buckets = _Routed(_rank0)
    weight_layouts = _Routed(_rank0)
    collective_address = _Routed(_rank0)
    init_collective = _Routed(_rank0)
    node_id = _Routed(_rank0)

    def _train_step(self, rollouts: list) -> ray.ObjectRef:
        from remax_ray.learner.shard import shard_rollouts

        shards = shard_rollouts(rollouts, self.world_size)
        return self._all("train_step", lambda r: shards[r])

    def kill(self) -> None:
        for a in self.ranks:
            ray.kill(a, no_restart=True)
