"""End to end the way a Ray user deploys: `ray start --head` with the dashboard on, the smoke config
submitted by deploy/job-submit.sh (`ray job submit` with deploy/runtime-env.yaml), the job SUCCEEDED,
and the remax gauges read back from the node's Prometheus endpoint while the job ran.

Everything runs in subprocesses against a head of its own (its own --temp-dir, free ports, its own
auth token), so it neither joins nor disturbs the in-process Ray of the other tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import free_ports, stop_process_tree

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: `ray`, and the `python` the entrypoint runs
RUN_NAME = "tiny-cpu-e2e"  # the `run` tag: the basename of run.output_dir
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# What the smoke run must export (it is ReMax, so no PPO-only keys), each as ray_remax_<key>.
REQUIRED = ("reward_sample", "reward_greedy", "adv_mean", "adv_std", "loss", "grad_norm", "kl",
            "entropy", "logp_diff", "generate_s", "score_s", "learn_s", "sync_s", "step_s",
            "sync_bytes", "eval_greedy_reward")


@dataclass
class Head:
    dashboard: str
    metrics: str
    env: dict[str, str]
    temp_dir: str
    token: str


def _http(url: str, token: str | None = None, data: bytes | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    # Short: Ray's Unix sockets live under it, and their paths may not exceed 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="rxj")
    token = secrets.token_hex(16)
    ports = dict(zip(("port", "dashboard-port", "metrics-export-port", "dashboard-agent-listen-port",
                      "dashboard-agent-grpc-port", "runtime-env-agent-port", "node-manager-port",
                      "object-manager-port", "ray-client-server-port"), free_ports(9)))
    # None of this process's Ray settings: an in-process ray.init() of another test sets some (the
    # address, the auth mode), and they would point the CLI at that cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        # Token auth, as Ray 2.60's `ray start` uses it, with a token of its own rather than ~/.ray's.
        RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
        # Ray 2.60 exports a gauge only in the report interval after it was set, and the node's
        # endpoint drops it 2 intervals later (measured: a gauge set once is gone after ~2 s at 1 s):
        # an eval reward is visible only briefly, and every remax gauge vanishes soon after the
        # driver exits. A 1 s interval (10 s by default) gets the values of a 5 s training loop
        # exported at all; the test reads them while the job runs.
        RAY_metrics_report_interval_ms="1000",
        RAY_USAGE_STATS_ENABLED="0",
        # The driver builds builtin:tiny here, not in the user's cache.
        REMAX_RAY_HOME=str(tmp_path_factory.mktemp("assets")),
    )
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--temp-dir", temp_dir, "--num-cpus", "2",
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--disable-usage-stats",
           *[a for k, v in ports.items() for a in (f"--{k}", str(v))]]
    log = tmp_path_factory.mktemp("head") / "ray-start.log"
    with open(log, "w") as out:
        # cwd outside the repository: a relative path can only resolve through the shipped working_dir.
        proc = subprocess.Popen(cmd, env=env, cwd=temp_dir, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    h = Head(f"http://127.0.0.1:{ports['dashboard-port']}",
             f"http://127.0.0.1:{ports['metrics-export-port']}/metrics", env, temp_dir, token)
    try:
        deadline = time.monotonic() + 180
        while _http_ok(f"{h.dashboard}/api/jobs/", token) is False:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield h
    finally:
        stop_process_tree(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _http_ok(url: str, token: str) -> bool:
    try:
        return _http(url, token)[0] == 200
    except OSError:
        return False


def _job(head: Head, job_id: str) -> dict:
    status, body = _http(f"{head.dashboard}/api/jobs/{job_id}", head.token)
    assert status == 200, body
    return json.loads(body)


def _logs(head: Head, job_id: str) -> str:
    status, body = _http(f"{head.dashboard}/api/jobs/{job_id}/logs", head.token)
    return json.loads(body)["logs"] if status == 200 else f"(no logs: HTTP {status}: {body})"


def _remax_samples(head: Head, kind: str = "gauge") -> dict[str, tuple[dict[str, str], float]]:
    """``{metric name: (labels, value)}`` of every ray_remax_* sample of type ``kind`` (gauge, or
    counter: ray_remax_*_total) on the node's endpoint."""
    try:
        status, text = _http(head.metrics)
    except OSError:
        return {}
    if status != 200:
        return {}
    return {s.name: (s.labels, s.value) for fam in text_string_to_metric_families(text) if fam.type == kind
            for s in fam.samples if s.name.startswith("ray_remax_") and not s.name.endswith("_created")}


def _run_job(head: Head, job_id: str, timeout_s: float, while_running=None, period_s: float = 2.0) -> str:
    """Wait for a terminal status (calling ``while_running`` every ``period_s`` meanwhile); fail with
    the job's logs when it does not succeed."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = _job(head, job_id)["status"]
        if while_running is not None:
            while_running()
        if status in TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(period_s)
    if status != "SUCCEEDED":
        pytest.fail(f"job {job_id} ended {status} (timeout {timeout_s:.0f} s); its logs:\n"
                    f"{_logs(head, job_id)[-6000:]}")
    return status


def _submit(head: Head, argv: list[str], **env: str) -> None:
    done = subprocess.run(argv, env={**head.env, "RAY_ADDRESS": head.dashboard, **env}, cwd=REPO,
                          timeout=120, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_runtime_env_ships_the_package_to_driver_and_workers(head):
    """Without an install, `import remax_ray` on the cluster must resolve to the unpacked working_dir
    (the job's current folder), for the driver and for a worker, and the excludes must hold."""
    code = ("import json, os, ray, remax_ray\n"
            "ray.init()\n"
            "where = ray.remote(num_cpus=0)(lambda: __import__('remax_ray').__file__)\n"
            "print('SHIPPED', json.dumps({'driver': remax_ray.__file__, 'worker': ray.get(where.remote()),"
            " 'cwd': os.getcwd(), 'files': sorted(os.listdir('.')),"
            " 'config': os.path.exists('deploy/configs/tiny-cpu.yaml')}))\n")
    job_id = f"ship-{secrets.token_hex(4)}"
    _submit(head, [str(BIN / "ray"), "job", "submit", "--address", head.dashboard, "--no-wait",
                   "--submission-id", job_id, "--runtime-env", "deploy/runtime-env.yaml", "--",
                   "python", "-c", code])
    _run_job(head, job_id, timeout_s=120)
    line = next(x for x in _logs(head, job_id).splitlines() if x.startswith("SHIPPED "))
    shipped = json.loads(line.removeprefix("SHIPPED "))
    cwd = shipped["cwd"]
    assert cwd.startswith(head.temp_dir) and "runtime_resources" in cwd, cwd
    assert shipped["driver"] == os.path.join(cwd, "remax_ray", "__init__.py")
    assert shipped["worker"] == shipped["driver"]  # same node, same unpacked package
    assert shipped["config"] is True
    assert {"remax_ray", "deploy", "pyproject.toml"} <= set(shipped["files"])
    assert not {".venv", ".git", "runs", "tests", "docs", "bench"} & set(shipped["files"])


def test_smoke_job_succeeds_and_its_gauges_reach_prometheus(head, tmp_path):
    out_dir = tmp_path / RUN_NAME
    job_id = f"remax-e2e-{secrets.token_hex(4)}"
    start = time.monotonic()
    _submit(head, [str(REPO / "deploy" / "job-submit.sh"), "--config", "deploy/configs/tiny-cpu.yaml",
                   f"run.output_dir={out_dir}"],
            REMAX_SUBMIT_FLAGS=f"--no-wait --submission-id {job_id}")
    # Latest sample of each metric over all scrapes: a gauge is on the endpoint only for ~2 s after
    # each set (see the head fixture), so one scrape rarely holds them all.
    samples: dict[str, tuple[dict[str, str], float]] = {}
    counters: dict[str, tuple[dict[str, str], float]] = {}
    scrapes = 0

    def scrape() -> None:
        nonlocal scrapes
        found = _remax_samples(head)
        scrapes += bool(found)
        samples.update(found)
        counters.update(_remax_samples(head, "counter"))

    _run_job(head, job_id, timeout_s=300, while_running=scrape, period_s=0.5)
    elapsed = time.monotonic() - start
    records = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [0, 1, 2, 3]  # run.steps=4
    assert list(out_dir.glob("checkpoints/*/config.json")), "no HF checkpoint folder was written"
    assert scrapes, f"no ray_remax_* metric was ever on {head.metrics} during the {elapsed:.0f} s job"
    missing = {f"ray_remax_{k}" for k in REQUIRED} - set(samples)
    assert not missing, f"missing {sorted(missing)}; exported: {sorted(samples)}"
    for name, (labels, value) in samples.items():
        assert labels.get("run") == RUN_NAME, (name, labels)
        key = name.removeprefix("ray_remax_")
        logged = [r[key] for r in records if isinstance(r.get(key), (int, float))]
        # A gauge holds a value the trainer wrote to metrics.jsonl, not merely a plausible number.
        assert any(math.isclose(value, v, rel_tol=1e-6, abs_tol=1e-9) for v in logged), (name, value)
    value = {name.removeprefix("ray_remax_"): v for name, (_, v) in samples.items()}
    assert value["sync_bytes"] > 100_000  # the tiny Llama is ~0.2 MB in float32
    assert value["logp_diff"] < 1e-3  # vLLM and the learner agree: weight sync works
    assert value["step_s"] >= value["generate_s"] > 0 and value["learn_s"] > 0
    assert value["grad_norm"] > 0  # the toy reward varies between samples: the policy moves
    assert 0.0 <= value["reward_sample"] <= 1.0  # a share of characters
    assert 0.0 <= value["eval_greedy_reward"] <= 1.0
    # Counters: cumulative from the driver's start, so the last scrape may precede the last step.
    from remax_ray.monitor.metric_names import COUNTERS, prometheus_name

    assert set(counters) <= {prometheus_name(n) for n in COUNTERS}, sorted(counters)
    count = {name.removeprefix("ray_remax_"): v for name, (labels, v) in counters.items() if labels.get("run") == RUN_NAME}
    assert 1 <= count.get("steps_total", 0) <= 4, count
    assert 0 < count.get("generated_tokens_total", 0) <= sum(r.get("generated_tokens", 0) for r in records)
    assert 0 < count.get("prompts_total", 0) <= max(r.get("prompts_consumed", 0) for r in records)

    # Every series a panel of the Grafana dashboard plots is one this job exported.
    dashboard = json.loads((REPO / "deploy" / "grafana" / "remax.json").read_text())
    queried = {m for p in dashboard["panels"] for t in p.get("targets", [])
               for m in re.findall(r"ray_remax_\w+", t["expr"])}
    assert queried and queried <= set(samples) | set(counters), sorted(queried - set(samples) - set(counters))
    print(f"\njob {job_id}: {elapsed:.0f} s, {scrapes} scrapes with remax metrics; labels "
          f"{samples['ray_remax_step_s'][0]}; exported:",
          ", ".join(f"{n}={v:.4g}" for n, (_, v) in sorted(samples.items())))
