"""A run on a cluster that starts without GPUs and grows: Ray's own autoscaler (v1, the fake multi-node
provider of ``ray.cluster_utils.AutoscalingCluster``) with a head of 1 CPU and no GPU, and a GPU worker
type with min_workers 0. The driver's start-up path (``autoscaling.read``, ``_check_fits``,
``placement.create``, as ``start_actors`` calls them) must not refuse the disaggregated run, must ask
for its placement group, say on the terminal what it waits for, and the autoscaler must add the nodes
the probes then land on. Probe actors only: the fake GPUs are resource counts, no engine runs.

``AutoscalingCluster.start()`` and ``shutdown()`` run ``ray stop --force``, which ends every Ray
process on the machine (other test sessions' too), and its config template
(``fake_multi_node/example.yaml``) is missing from Ray 2.60's wheel; the subclass below gives it the
template's fields and starts and stops its head by process id, on a port and temp dir of its own.
The driver runs in a subprocess so that it does not meet the test session's in-process Ray.

On a busy machine (another training run) the head and its autoscaler take far longer to come up than
on CI, so nothing here waits for a fixed time: the driver starts once the head says it is up, and
waits for the autoscaler's first status; the bounds only turn a genuine hang into an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from ray.cluster_utils import AutoscalingCluster

from helpers import free_ports, stop_process_tree

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
GPU_TYPE = {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2}
HANG_S = 600
"""Bound on each wait for the cluster to be ready (the head, the autoscaler's first status): long
enough for a loaded machine, there to report a hang."""


class OwnAutoscalingCluster(AutoscalingCluster):
    """AutoscalingCluster on a port and temp dir of its own, stopped by process id (no `ray stop`)."""

    def __init__(self, head_resources: dict, worker_node_types: dict):
        self.port = free_ports(1)[0]
        self.temp_dir = tempfile.mkdtemp(prefix="rxa")  # short: Ray's socket paths must stay < 108 bytes
        self.proc: subprocess.Popen | None = None
        super().__init__(head_resources, worker_node_types, idle_timeout_minutes=5,
                         max_workers=sum(t["max_workers"] for t in worker_node_types.values()))

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
        # The fields of Ray's fake_multi_node/example.yaml; the worker nodes join this head's GCS.
        return {"cluster_name": "fake_multinode", "auth": {}, "upscaling_speed": 1.0, "docker": {},
                "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                             "disable_launch_config_check": True, "gcs_address": f"127.0.0.1:{self.port}"},
                "available_node_types": {**worker_node_types, "ray.head.default": {
                    "resources": head_resources, "node_config": {}, "max_workers": 0}},
                "head_node_type": "ray.head.default", **{k: [] for k in (
                    "initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                    "head_start_ray_commands", "worker_start_ray_commands", "cluster_synced_files",
                    "rsync_exclude", "rsync_filter")},
                "file_mounts": {}, "file_mounts_sync_continuously": False, **config_kwargs}

    def start(self, _system_config=None, override_env=None) -> None:
        config = Path(self.temp_dir) / "autoscaling.json"
        config.write_text(json.dumps(self._config))
        head = self._head_resources
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        # As AutoscalingCluster.start: the fake provider's switch and a 1 s autoscaler round.
        env.update(AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_FAKE_CLUSTER="1", RAY_USAGE_STATS_ENABLED="0",
                   RAY_AUTH_MODE="disabled", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                   PYTHONUNBUFFERED="1")  # `ray start` says it is up in its log while it keeps running
        cmd = [str(BIN / "ray"), "start", "--head", "--block", f"--port={self.port}", f"--temp-dir={self.temp_dir}",
               f"--num-cpus={head.get('CPU', 0)}", f"--num-gpus={head.get('GPU', 0)}", "--include-dashboard=false",
               f"--autoscaling-config={config}", "--disable-usage-stats"]
        self.log = Path(self.temp_dir) / "head.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(cmd, env=env, cwd=self.temp_dir, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_until_up(self, bound_s: float = HANG_S) -> None:
        """Return once `ray start` says the head is up (its GCS answers and its raylet registered):
        a driver connecting before then gives up after Ray's fixed ~20 s ("Timed out while waiting
        for GCS to become available")."""
        deadline = time.monotonic() + bound_s
        while "Ray runtime started." not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"`ray start` exited with {self.proc.returncode}:\n"
                                   + self.log.read_text(errors="replace")[-4000:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"the head did not come up in {bound_s:.0f} s:\n"
                                   + self.log.read_text(errors="replace")[-4000:])
            time.sleep(0.5)

    def shutdown(self) -> None:
        if self.proc is not None:
            stop_process_tree(self.proc)  # the fake worker nodes are children of its autoscaler
        shutil.rmtree(self.temp_dir, ignore_errors=True)


_DRIVER = r"""
import json, logging, sys, time
import ray
from remax_ray.cluster import actors, autoscaling, placement
from remax_ray.config import load_config
from remax_ray.monitor import console

console.configure()
placement._PROGRESS_EVERY_S = 2.0  # the progress line every 2 s instead of 15, so a short wait shows it
ray.init(address=sys.argv[1], log_to_driver=False)
head = ray.get_runtime_context().get_node_id()
deadline = time.monotonic() + float(sys.argv[2])
growth = autoscaling.read()
while not growth.can_grow:  # the autoscaler's first round: its monitor process starts with the head
    if time.monotonic() > deadline:
        sys.exit(f"the autoscaler published no status in {sys.argv[2]} s")
    time.sleep(0.5)
    growth = autoscaling.read()
before = ray.cluster_resources()
cfg = load_config(None, ["cluster.device=cuda", "cluster.placement=disaggregated",
                         "cluster.placement_strategy=STRICT_SPREAD", "rollout.num_generators=1",
                         "rollout.num_cpus_per_generator=1", "learner.num_cpus=1",
                         "cluster.placement_timeout_s=5", "cluster.autoscale_timeout_s=240",
                         "run.output_dir=/tmp/autoscaling-run"])
the_plan = placement.plan_for(cfg, "cuda")
actors._check_fits(cfg, the_plan, growth)  # would refuse: the cluster has no GPU yet
t0 = time.monotonic()
where = placement.create(cfg, "cuda", growth)
waited = time.monotonic() - t0
gpu_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")}

@ray.remote
class Probe:
    def where(self):
        return {"node": ray.get_runtime_context().get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}

probes = {role: Probe.options(**where.options(role)).remote() for role in where.plan.slots}
out = {"source": growth.source, "before": before, "waited": waited, "head": head,
       "gpu_nodes": sorted(gpu_nodes), "placed": {role: ray.get(p.where.remote()) for role, p in probes.items()}}
for p in probes.values():
    ray.kill(p)
where.remove()
ray.shutdown()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def grown() -> dict:
    cluster = OwnAutoscalingCluster({"CPU": 1}, {"gpu": GPU_TYPE})
    cluster.start()
    try:
        cluster.wait_until_up()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["RAY_AUTH_MODE"] = "disabled"
        # The driver waits up to HANG_S for the autoscaler and 240 s for the nodes it adds; HANG_S more
        # for the rest (its imports, connecting, the probes).
        done = subprocess.run([sys.executable, "-c", _DRIVER, f"127.0.0.1:{cluster.port}", str(HANG_S)],
                              capture_output=True, text=True, timeout=HANG_S + 240 + HANG_S, env=env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert done.returncode == 0 and lines, done.stderr[-4000:] + cluster.log.read_text()[-2000:]
        return {**json.loads(lines[0].removeprefix("RESULT ")), "stderr": done.stderr}
    finally:
        cluster.shutdown()


def test_the_run_is_not_refused_and_its_placement_group_adds_gpu_nodes(grown):
    assert grown["source"] == "v1 autoscaler"
    assert grown["before"].get("GPU", 0) == 0  # what the fit check used to refuse
    placed = grown["placed"]
    nodes = {role: placed[role]["node"] for role in ("generator-0", "learner")}
    # STRICT_SPREAD: each on a GPU node of its own, both started by the autoscaler for this group
    assert len(set(nodes.values())) == 2 and set(nodes.values()) <= set(grown["gpu_nodes"])
    assert grown["head"] not in nodes.values()
    assert all(len(placed[role]["gpu_ids"]) == 1 for role in nodes)
    assert placed["reward"]["node"] == nodes["learner"]


def test_the_wait_is_shown_with_what_it_waits_for_and_how_long(grown):
    waits = [line for line in grown["stderr"].splitlines() if "placement: waiting for 2 bundles" in line]
    assert waits, grown["stderr"][-3000:]
    assert "2 x {CPU: 1, GPU: 1} (disaggregated, STRICT_SPREAD); the v1 autoscaler is " in waits[0]
    assert waits[-1].endswith("of 240 s (cluster.autoscale_timeout_s)")
    assert any("the v1 autoscaler is starting" in line and "x gpu" in line for line in waits)
    assert "placement: 2 bundles placed after" in grown["stderr"]
