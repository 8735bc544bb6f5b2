"""start_actors refuses, before creating anything, a request the cluster can never schedule, and lets
one that fits (exactly) go on to create the placement group. Each case is checked on both sides of
its boundary, through start_actors with the Ray calls replaced."""

from __future__ import annotations

import re

import pytest

from remax_ray.cluster import actors as cluster
from remax_ray.cluster.autoscaling import Growth, from_cluster_config
from remax_ray.cluster.placement import plan_for
from remax_ray.config import ConfigError, load_config


class _Created(Exception):
    """Raised by the stand-in for placement.create: start_actors got past its resource check."""


@pytest.fixture
def start(monkeypatch):
    """start_actors(cfg) on a cluster of the given resources; returns the devices that
    placement.create was called for (empty when start_actors refused before creating anything)."""
    created: list[str] = []

    def create(cfg, device, growth=None):
        created.append(device)
        raise _Created

    monkeypatch.setattr(cluster.placement, "create", create)
    monkeypatch.setattr(cluster.autoscaling, "read", lambda: cluster.autoscaling.NO_GROWTH)  # fixed size

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


def test_a_cluster_that_can_grow_is_not_refused_what_its_nodes_lack_now(monkeypatch):
    """A KubeRay/`ray up` cluster whose GPU workers start at 0: the placement group asks for them."""
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: {"CPU": 8.0})
    cfg = load_config(None, ["rollout.num_generators=3", "run.prompts_per_step=3", "learner.micro_batch_size=3"])
    with pytest.raises(ConfigError, match="no autoscaler that could add nodes"):
        cluster._check_fits(cfg, plan_for(cfg, "cuda"))
    cluster._check_fits(cfg, plan_for(cfg, "cuda"), Growth("v1 autoscaler"))  # node types unknown: wait


def test_published_node_types_refuse_only_what_no_type_can_ever_hold(monkeypatch):
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: {"CPU": 8.0})
    monkeypatch.setattr(cluster.ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 8.0}}])
    growth = from_cluster_config([("head", {"CPU": 8.0}, 1), ("gpu", {"CPU": 4.0, "GPU": 1.0}, 2)])
    cfg = load_config(None, [])  # 1 generator + learner: 2 x {CPU: 1, GPU: 1}, 2 GPU nodes at most
    cluster._check_fits(cfg, plan_for(cfg, "cuda"), growth)
    big = load_config(None, ["rollout.num_cpus_per_generator=6"])
    with pytest.raises(ConfigError, match=r"bundles \[\{'CPU': 6.0, 'GPU': 1.0\}\] .* fit no node type"):
        cluster._check_fits(big, plan_for(big, "cuda"), growth)
    many = load_config(None, ["rollout.num_generators=2", "run.prompts_per_step=2", "learner.micro_batch_size=2"])
    with pytest.raises(ConfigError, match="need 3 CPUs and 3 GPUs .* at most 16 CPUs and 2 GPUs"):
        cluster._check_fits(many, plan_for(many, "cuda"), growth)
