"""start_actors refuses, before creating anything, a request the cluster can never schedule."""

from __future__ import annotations

import pytest

from remax_ray.cluster import actors as cluster
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
