"""The chaos test: one run whose processes are SIGKILLed several times, at moments drawn from a
seeded schedule (actor start-up included), must finish and equal an uninterrupted run of the same
configuration bit for bit: per-step metrics (the counts of survived deaths aside), sample tables and
final weights.

Its victims are the generator (on CPU its vLLM engine core and worker run in its process:
remax_ray/rollout/generator.py), the reward actor, and a learner rank of two (DDP). A generator or
the reward actor is restarted by Ray and the step retried; a learner rank's death restarts both
ranks from the newest checkpoint (run.max_learner_restarts). A learner rank is only killed once a
checkpoint exists: before the first one, its death ends the run with the resume message.

The processes are found among this test session's own descendants (the Ray cluster that
``ray_session`` started), by the actor class in their process title, so nothing of another run on
the machine is ever killed."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from remax_ray.config import load_config
from remax_ray.driver.trainer import Trainer

from same_run import SURVIVAL_COUNTERS, assert_same_run, overrides, records

pytestmark = pytest.mark.integration
SEED = 36
VICTIMS = {"generator": "GeneratorShell", "reward": "RewardShell", "learner": "LearnerShell"}
"""Who may die -> the actor class its process title names."""
KILLS = 4
"""After the one at start-up; each at a seeded share of the uninterrupted run's wall time."""
CHAOS = ["learner.num_workers=2", "learner.num_cpus=0.5", "cluster.max_actor_restarts=8", "run.step_retries=8",
         "run.max_learner_restarts=4"]


def schedule(seed: int, wall_s: float) -> list[tuple[float, str]]:
    """(seconds after the run starts, victim): the generator while it starts, then ``KILLS`` more."""
    rng = random.Random(seed)
    first = [(rng.uniform(0.0, 2.0), "generator")]
    later = sorted((rng.uniform(0.15, 0.9) * wall_s, rng.choice(sorted(VICTIMS))) for _ in range(KILLS))
    return first + later


def _processes(victim: str) -> list[psutil.Process]:
    """This session's live processes of ``victim``'s actor class (Ray sets the process title)."""
    found = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            title = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if title.startswith("ray::") and VICTIMS[victim] in title and proc.status() != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


class Killer:
    """Runs ``plan`` against this session's processes from a thread; ``done`` lists what it killed."""

    def __init__(self, plan: list[tuple[float, str]], out: Path, seed: int):
        self.plan, self.out, self.rng = plan, out, random.Random(seed)
        self.done: list[tuple[float, str, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        for at, victim in self.plan:
            while not self.stop.is_set() and (time.monotonic() - start < at or not self._ready(victim)):
                time.sleep(0.05)
            if self.stop.is_set():
                return
            victims = _processes(victim)
            proc = self.rng.choice(victims)
            try:
                proc.send_signal(signal.SIGKILL)
                self.done.append((round(time.monotonic() - start, 1), victim, proc.pid))
            except psutil.NoSuchProcess:
                pass

    def _ready(self, victim: str) -> bool:
        if victim == "learner" and not (self.out / "checkpoints" / "latest").exists():
            return False
        return bool(_processes(victim))


def _fit(cfg) -> float:
    start = time.monotonic()
    trainer = Trainer(cfg)
    try:
        trainer.fit()
    finally:
        trainer.shutdown()
    return time.monotonic() - start


@pytest.fixture(scope="module")
def uninterrupted_two_ranks(ray_session, tiny_model, prompt_file, tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("uninterrupted-k2")
    wall = _fit(load_config(None, [*overrides(tiny_model, prompt_file, out), *CHAOS]))
    return out, wall


def test_a_run_killed_again_and_again_equals_an_uninterrupted_one(uninterrupted_two_ranks, ray_session,
                                                                  tiny_model, prompt_file, tmp_path):
    reference, wall = uninterrupted_two_ranks
    plan = schedule(SEED, wall)
    killer = Killer(plan, tmp_path, SEED)
    killer.thread.start()
    try:
        _fit(load_config(None, [*overrides(tiny_model, prompt_file, tmp_path), *CHAOS]))
    finally:
        killer.stop.set()
        killer.thread.join(timeout=5)
    print("chaos: planned", plan, "killed (s, victim, pid)", killer.done)  # shown with -s / on failure
    assert len(killer.done) >= 3, (plan, killer.done)  # the run outlived most of its schedule
    last = [r for r in records(tmp_path) if "loss" in r][-1]
    assert sum(last[c] for c in SURVIVAL_COUNTERS) >= 1, (killer.done, last)
    assert_same_run(tmp_path, reference, ignore=SURVIVAL_COUNTERS)
