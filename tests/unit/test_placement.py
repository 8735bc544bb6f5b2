"""The placement plan (pure): bundles and slots for each mode, on GPU and CPU clusters."""

from __future__ import annotations

import pytest

from remax_ray.cluster.placement import Slot, plan, plan_for, run_namespace
from remax_ray.config import ConfigError, load_config


def test_disaggregated_gives_every_actor_a_whole_gpu_of_its_own():
    p = plan("disaggregated", 2, generator_cpus=2, learner_cpus=4, gpu=True)
    assert p.bundles == [{"CPU": 2, "GPU": 1}, {"CPU": 2, "GPU": 1}, {"CPU": 4, "GPU": 1}]
    assert p.slots == {"generator-0": Slot(0, 2, 1), "generator-1": Slot(1, 2, 1),
                       "learner": Slot(2, 4, 1), "reward": Slot(2, 0, 0)}


def test_colocated_shares_generator_zeros_gpu_with_the_learner():
    p = plan("colocated", 2, generator_cpus=2, learner_cpus=4, gpu=True, learner_gpu_share=0.25)
    assert p.bundles == [{"CPU": 6, "GPU": 1}, {"CPU": 2, "GPU": 1}]
    assert p.slots["generator-0"] == Slot(0, 2, 0.75) and p.slots["learner"] == Slot(0, 4, 0.25)
    assert p.slots["generator-1"] == Slot(1, 2, 1) and p.slots["reward"].bundle == 0
    # what a bundle offers is exactly what its actors take
    for i, bundle in enumerate(p.bundles):
        mine = [s for s in p.slots.values() if s.bundle == i]
        assert sum(s.num_gpus for s in mine) == bundle["GPU"] and sum(s.num_cpus for s in mine) == bundle["CPU"]


def test_cpu_only_bundles_have_no_gpu_key_and_empty_bundles_are_refused():
    p = plan("disaggregated", 1, generator_cpus=1, learner_cpus=1, gpu=False)
    assert p.bundles == [{"CPU": 1}, {"CPU": 1}]
    with pytest.raises(ConfigError, match="no resources.*num_cpus"):
        plan("disaggregated", 1, generator_cpus=0, learner_cpus=1, gpu=False)


def test_config_keys_and_namespace(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'colocated'"):  # an alias is not guessed
        load_config(None, ["cluster.placement=colocate"])
    cfg = load_config(None, ["cluster.placement=colocated", f"run.output_dir={tmp_path}/my-run",
                             "rollout.num_generators=2"])
    assert plan_for(cfg, "cuda").slots["learner"] == Slot(0, 1.0, 0.5)
    assert run_namespace(cfg) == "remax-my-run"


def test_each_learner_rank_gets_a_bundle_of_its_own_so_ranks_can_span_nodes():
    p = plan("disaggregated", 1, generator_cpus=2, learner_cpus=4, gpu=True, learner_ranks=3)
    assert p.bundles == [{"CPU": 2, "GPU": 1}] + [{"CPU": 4, "GPU": 1}] * 3
    assert [p.slots[r] for r in ("learner", "learner-1", "learner-2")] == [Slot(1, 4, 1), Slot(2, 4, 1), Slot(3, 4, 1)]
    assert p.slots["reward"] == Slot(1, 0, 0)  # with rank 0


def test_colocated_ranks_share_the_generators_bundles_while_there_are_some():
    p = plan("colocated", 2, generator_cpus=2, learner_cpus=4, gpu=True, learner_gpu_share=0.25, learner_ranks=3)
    assert p.slots["learner"] == Slot(0, 4, 0.25) and p.slots["learner-1"] == Slot(1, 4, 0.25)
    assert p.slots["generator-1"] == Slot(1, 2, 0.75)
    assert p.slots["learner-2"] == Slot(2, 4, 1)  # no third generator: a bundle (and GPU) of its own
    assert p.bundles == [{"CPU": 6, "GPU": 1}, {"CPU": 6, "GPU": 1}, {"CPU": 4, "GPU": 1}]
