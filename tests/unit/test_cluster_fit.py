"""start_actors refuses, before creating anything, a request the cluster can never schedule, and lets
one that fits (exactly) go on to create the placement group. Each case is checked on both sides of
its boundary, through start_actors with the Ray calls replaced."""

from __future__ import annotations

import re

import pytest

from remax_ray.cluster import actors as cluster
from remax_ray.config import ConfigError, load_config


class _Created(Exception):
    """Raised by the stand-in for placement.create: start_actors got past its resource check."""


@pytest.fixture
def start(monkeypatch):
    """start_actors(cfg) on a cluster of the given resources; returns the devices that
    placement.create was called for (empty when start_actors refused before creating anything)."""
    created: list[str] = []

    def create(cfg, device):
        created.append(device)
        raise _Created

    monkeypatch.setattr(cluster.placement, "create", create)

    def run(cfg, device: str, **resources: float) -> list[str]:
        monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: dict(resources))
        monkeypatch.setattr(cluster, "resolve_device", lambda c: device)
        try:
            cluster.start_actors(cfg, "/unused/model")
        except _Created:
            pass
        return created

    return run


def test_infeasible_cpu_request_fails_fast(start):
    # 3 generators x 1 CPU + learner 1 CPU = 4 > 2
    cfg = load_config(None, ["rollout.num_generators=3", "run.prompts_per_step=3",
                             "learner.micro_batch_size=3"])
    with pytest.raises(ConfigError, match="need 4 CPUs and 0 GPUs .* but the Ray cluster has 2 CPUs"):
        start(cfg, "cpu", CPU=2.0)


@pytest.mark.parametrize("cpus", [2.0, 1.5])
def test_the_default_run_needs_exactly_two_cpus(start, cpus):
    cfg = load_config(None, [])  # 1 generator + 1 learner, 1 CPU each
    if cpus >= 2.0:
        assert start(cfg, "cpu", CPU=cpus) == ["cpu"]
    else:
        with pytest.raises(ConfigError, match=re.escape("need 2 CPUs and 0 GPUs (disaggregated placement) "
                                                        "but the Ray cluster has 1.5 CPUs and 0 GPUs")):
            start(cfg, "cpu", CPU=cpus)


@pytest.mark.parametrize("gpus, placement, fits", [
    (1.0, "disaggregated", False),  # a whole GPU for the engine and another for the learner
    (2.0, "disaggregated", True),
    (1.0, "colocated", True),  # learner and engine share generator 0's GPU
    (0.0, "colocated", False),
])
def test_gpu_learner_needs_a_gpu_per_actor_unless_colocated(start, gpus, placement, fits):
    cfg = load_config(None, [f"cluster.placement={placement}"])
    need = 2 if placement == "disaggregated" else 1
    if fits:
        assert start(cfg, "cuda", CPU=8.0, GPU=gpus) == ["cuda"]
    else:
        with pytest.raises(ConfigError, match=re.escape(f"need 2 CPUs and {need} GPUs ({placement} "
                                                        f"placement) but the Ray cluster has 8 CPUs and "
                                                        f"{gpus:g} GPUs")):
            start(cfg, "cuda", CPU=8.0, GPU=gpus)
