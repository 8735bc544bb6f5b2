"""Actors whose constructor fails (a vLLM engine core killed while the engine starts) are started
again, up to run.max_learner_restarts times, before the run gives up (fake actors, no Ray)."""

from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError

from remax_ray.cluster import actors as actors_module


class _Actor:
    def __init__(self, role: str, ready: bool):
        self.role, self.ready, self.killed = role, ready, False
        self.__ray_ready__ = self  # ``actor.__ray_ready__.remote()``

    def remote(self):
        return self

    def kill(self) -> None:
        self.killed = True


def _get(ref, timeout=None):
    if not ref.ready:
        raise ActorDiedError()
    return True


@pytest.fixture(autouse=True)
def _fake_ray(monkeypatch):
    monkeypatch.setattr(actors_module.ray, "get", _get)


def _starts(failures: dict[str, int], made: list):
    """Each role's constructor fails its first ``failures[role]`` times."""
    def start(role):
        def make():
            n = sum(a.role == role for a in made)
            actor = _Actor(role, ready=n >= failures.get(role, 0))
            made.append(actor)
            return actor
        return make
    return {role: start(role) for role in ("generator-0", "reward", "learner")}


def test_a_role_that_dies_while_starting_is_started_again(caplog) -> None:
    made: list[_Actor] = []
    ready = actors_module.started(_starts({"generator-0": 2}, made), retries=2)
    assert all(a.ready for a in ready.values())
    generators = [a for a in made if a.role == "generator-0"]
    assert len(generators) == 3 and [a.killed for a in generators] == [True, True, False]
    assert sum(a.role == "reward" for a in made) == 1  # the others were started once
    assert "generator-0 died while starting (ActorDiedError" in caplog.text


def test_past_the_limit_the_start_up_fails_with_the_actors_error() -> None:
    with pytest.raises(ActorDiedError):
        actors_module.started(_starts({"learner": 3}, []), retries=2)
    with pytest.raises(ActorDiedError):
        actors_module.started(_starts({"reward": 1}, []), retries=0)
