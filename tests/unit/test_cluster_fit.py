"""start_actors refuses, before creating anything, a request the cluster can never schedule."""

from __future__ import annotations

import pytest

from remax_ray.cluster import actors as cluster
from remax_ray.cluster.autoscaling import Growth, from_cluster_config
from remax_ray.cluster.placement import plan_for
from remax_ray.config import ConfigError, load_config


def test_infeasible_cpu_request_fails_fast(monkeypatch):
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: {"CPU": 2.0})
    # 3 generators x 1 CPU + learner 1 CPU = 4 > 2
    cfg = load_config(None, ["rollout.num_generators=3", "run.prompts_per_step=3",
                             "learner.micro_batch_size=3"])
    with pytest.raises(ConfigError, match="need 4 CPUs and 0 GPUs .* but the Ray cluster has 2 CPUs"):
        cluster._check_fits(cfg, plan_for(cfg, "cpu"))


def test_feasible_request_passes(monkeypatch):
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: {"CPU": 2.0})
    cfg = load_config(None, [])
    cluster._check_fits(cfg, plan_for(cfg, "cpu"))  # 1 generator + 1 learner = 2 CPUs


def test_gpu_learner_needs_a_gpu_per_actor_unless_colocated(monkeypatch):
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 1.0})
    cfg = load_config(None, [])
    with pytest.raises(ConfigError, match="2 GPUs \\(disaggregated placement\\)"):
        cluster._check_fits(cfg, plan_for(cfg, "cuda"))
    colocated = load_config(None, ["cluster.placement=colocated"])
    cluster._check_fits(colocated, plan_for(colocated, "cuda"))  # learner and engine share the GPU


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
