"""Two learner ranks as Ray actors, with the real vLLM-CPU engine and weight sync, on the tiny model.

After each K = 2 step the engine's log-probs of its own samples equal the learner's recomputed ones
(``logp_diff``, measured on the next step's batch), so the weights the ranks export, bucket by
bucket (gathered from their shards under FSDP2), are the ones they train. The final checkpoint is
an HF folder that transformers and vLLM load with the ranks' weights.
"""

from __future__ import annotations

import pytest
import ray
import torch

from remax_ray.cluster.shells import GeneratorShell

from helpers import sequence_logprobs

pytestmark = pytest.mark.integration

FIXED = [[1, 2, 3, 4, 5, 6, 7, 8]]
TRANSPORTS = ("shm", "objects", "gloo")
"""The learner's shared memory (one node), the object store into the generator's arena, the broadcast."""


# FSDP2 only here (its export is the collective one: every rank joins each bucket's gathers); DDP
# exports from rank 0 alone, as one learner does, and its update is checked in tests/unit/test_learner_ranks.py.
@pytest.fixture(scope="module", params=["fsdp"])
def ranks(request, ray_session, tmp_path_factory, tiny_model, prompt_file):
    """One started set of actors (two FSDP2 ranks, a generator, the reward actor) that every transport's
    run trains on in turn, as `remax-ray repro` shares its engines between runs: a run given started
    actors first syncs its learner's weights into the generator over its own transport, and the
    transport is all that differs between the runs (starting the actors is most of a run's time)."""
    from test_service import make_trainer  # the module's config for the tiny model

    strategy = request.param
    owner = make_trainer(tmp_path_factory.mktemp("ranks"), tiny_model, prompt_file, *_overrides(strategy))
    yield strategy, owner.actors
    owner.shutdown()


def _overrides(strategy: str, *extra: str) -> list[str]:
    return ["learner.num_workers=2", f"learner.strategy={strategy}", "run.steps=3", "algo.kl_coef=0.05",
            "learner.num_cpus=0.25", *extra]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_learner_ranks_train_sync_and_checkpoint(transport, ranks, tmp_path, tiny_model, prompt_file):
    from test_service import make_config
    from transformers import AutoModelForCausalLM

    from remax_ray.driver.trainer import Trainer

    strategy, actors = ranks
    cfg = make_config(tmp_path, tiny_model, prompt_file, *_overrides(strategy, f"cluster.sync_transport={transport}"))
    t = Trainer(cfg, actors=actors)  # syncs the ranks' current weights in first, over this transport
    try:
        summary = t.fit(progress=False)
        records = [r for r in t.metrics.read() if "logp_diff" in r]
        # The generator holds the weights of the last sync: the ranks' final ones.
        engine_now = ray.get(actors.generators[0].sequence_logprobs.remote(FIXED))[0]
    finally:
        t.metrics.close()  # the actors stay up for the next transport (the fixture kills them)
    assert t.transport == ("gloo" if transport == "gloo" else "cpu")
    assert len(records) == 3 and all(r["skipped_updates"] == 0 for r in records)
    # Steps 2 and 3 sample from the weights synced after steps 1 and 2 (step 1 from the first sync).
    assert all(r["logp_diff"] < 1e-4 for r in records), [r["logp_diff"] for r in records]
    folder = summary["checkpoint"]
    hf = sequence_logprobs(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), FIXED)[0]
    # The checkpoint holds the ranks' final weights, the ones the last sync exported.
    assert max(abs(a - b) for a, b in zip(engine_now, hf)) < 1e-4
    if transport != TRANSPORTS[-1]:
        return
    # A fresh vLLM engine loads the folder itself. Once: how the ranks save does not depend on the
    # transport, and an engine start costs as much as a run.
    engine = ray.remote(GeneratorShell).options(num_cpus=0.25).remote(folder, max_prompt_tokens=16, max_new_tokens=4)
    try:
        served = ray.get(engine.sequence_logprobs.remote(FIXED))[0]
    finally:
        ray.kill(engine)
    assert max(abs(a - b) for a, b in zip(served, hf)) < 1e-4


_ACROSS_NODES = r"""
import json, sys
import ray
from ray.cluster_utils import Cluster
sys.path.insert(0, sys.argv[2])  # tests/: helpers
from helpers import toy_rollouts
from remax_ray.cluster import placement
from remax_ray.cluster.actors import start_learner
from remax_ray.config import load_config

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
for i in range(3):
    cluster.add_node(num_cpus=1, resources={f"host{i}": 1})
ray.init(address=cluster.address, log_to_driver=False)
cluster.wait_for_nodes()
cfg = load_config(None, [f"model.path={sys.argv[1]}", "learner.num_workers=2", f"learner.strategy={sys.argv[3]}",
                         "learner.micro_batch_size=2", "learner.lr=1e-3", "algo.kl_coef=0.05",
                         "cluster.placement_strategy=STRICT_SPREAD", "rollout.num_cpus_per_generator=1",
                         "learner.num_cpus=1", "cluster.threads_per_actor=1", "run.output_dir=/tmp/ranks-run"])
where = placement.create(cfg, "cpu")
group = start_learner(cfg, sys.argv[1], "cpu", where=where)
nodes = ray.get([r.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()) for r in group.ranks])
rollouts = toy_rollouts(6, 2, seed=3, response_len=lambda i, j: 2 + (i * 3 + j) % 5, greedy_score=0.3)
metrics = ray.get(group.train_step.remote(rollouts))
group.kill()
where.remove()
ray.shutdown()
cluster.shutdown()
print("RESULT " + json.dumps({"nodes": nodes, "metrics": metrics}))
"""


def test_ranks_on_two_nodes_train_as_one_learner(tiny_model):
    """Two ranks in bundles on two nodes of a simulated cluster (STRICT_SPREAD): their update's
    loss and pre-clip gradient norm are those of one learner on the whole batch."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from remax_ray.config import AlgoConfig, LearnerConfig
    from remax_ray.learner.learner import Learner

    from helpers import toy_rollouts

    tests = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", _ACROSS_NODES, str(tiny_model), tests, "ddp"],
                          capture_output=True, text=True, timeout=600)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    got = json.loads(lines[0].removeprefix("RESULT "))
    assert len(set(got["nodes"])) == 2
    single = Learner(str(tiny_model), LearnerConfig(lr=1e-3, micro_batch_size=2), AlgoConfig(kl_coef=0.05), seed=0)
    want = single.train_step(toy_rollouts(6, 2, seed=3, response_len=lambda i, j: 2 + (i * 3 + j) % 5,
                                          greedy_score=0.3))
    for key in ("grad_norm", "loss", "kl", "reward_sample", "adv_mean"):
        assert got["metrics"][key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key
