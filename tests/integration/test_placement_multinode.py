"""Placement on a simulated multi-node cluster: several raylets on this machine, each with its own
resources (ray.cluster_utils.Cluster; GPUs are resource counts, nothing touches CUDA).

Probe actors are created with exactly the options ``start_actors`` uses (``Placement.options``), and
report their node and GPU ids. It runs in a subprocess so that its cluster does not meet the test
session's in-process Ray.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

_SCRIPT = r"""
import json, sys
import ray
from ray.cluster_utils import Cluster
from remax_ray.cluster import placement
from remax_ray.config import load_config

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
nodes = [cluster.add_node(num_cpus=3, num_gpus=1, resources={f"host{i}": 1}) for i in range(3)]
ray.init(address=cluster.address, log_to_driver=False)
cluster.wait_for_nodes()
names = {n["NodeID"]: next(k for k in n["Resources"] if k.startswith("host") or k == "node:__internal_head__")
         for n in ray.nodes() if n["Alive"]}

@ray.remote
class Probe:
    def where(self):
        ctx = ray.get_runtime_context()
        return {"node": names[ctx.get_node_id()], "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "resources": ctx.get_assigned_resources()}

out = {}
for mode, strategy in [("disaggregated", "STRICT_SPREAD"), ("colocated", "PACK")]:
    cfg = load_config(None, [f"cluster.placement={mode}", f"cluster.placement_strategy={strategy}",
                             "rollout.num_generators=2", "rollout.num_cpus_per_generator=1",
                             "learner.num_cpus=1", "cluster.placement_timeout_s=60",
                             f"run.output_dir=/tmp/{mode}-run"])
    where = placement.create(cfg, "cuda")
    probes = {role: Probe.options(**where.options(role)).remote() for role in where.plan.slots}
    out[mode] = {role: ray.get(p.where.remote()) for role, p in probes.items()}
    out[mode]["_names"] = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                                 if a["namespace"] == placement.run_namespace(cfg))
    for p in probes.values():
        ray.kill(p)
    where.remove()
ray.shutdown()
cluster.shutdown()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def placed() -> dict:
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[0].removeprefix("RESULT "))


def test_disaggregated_puts_each_generator_and_the_learner_on_its_own_gpu_node(placed):
    got = placed["disaggregated"]
    nodes = {role: got[role]["node"] for role in ("generator-0", "generator-1", "learner")}
    assert len(set(nodes.values())) == 3 and all(n.startswith("host") for n in nodes.values())
    for role in nodes:
        assert got[role]["resources"]["GPU"] == 1.0 and len(got[role]["gpu_ids"]) == 1
    assert got["reward"]["node"] == nodes["learner"] and "GPU" not in got["reward"]["resources"]
    assert got["_names"] == ["remax-generator-0", "remax-generator-1", "remax-learner", "remax-reward"]


def test_colocated_shares_one_gpu_between_generator_zero_and_the_learner(placed):
    got = placed["colocated"]
    gen0, learner, gen1 = got["generator-0"], got["learner"], got["generator-1"]
    assert gen0["node"] == learner["node"] and gen0["gpu_ids"] == learner["gpu_ids"]
    assert gen0["resources"]["GPU"] == 0.5 and learner["resources"]["GPU"] == 0.5
    # each node has one GPU, so the second generator's whole GPU is on another node
    assert gen1["node"] != gen0["node"] and gen1["resources"]["GPU"] == 1.0
