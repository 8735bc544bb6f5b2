"""Bad-input matrix, the address Ray finds by itself: with no cluster.address and no RAY_ADDRESS,
``ray.init()`` joins the cluster the last ``ray start`` recorded in ``<Ray temp dir>/ray_current_cluster``,
a file that outlives its cluster. A dead one must not hang the run for a quarter of an hour, and
Ctrl-C / SIGTERM must end start-up within seconds even while Ray retries a connection.

Every test points Ray's temp dir at a folder of its own (``RAY_TMPDIR``, which Ray reads for the
record and for the sessions it starts), so the machine's /tmp/ray is neither read nor written. Real
Ray runs only in subprocesses: its own ``ray start --head`` (its own temp dir, ports and auth token,
stopped by its process id) and drivers that join it.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import ray

from remax_ray.cluster import actors as cluster
from remax_ray.cluster.address import auto_join_address, recorded_address
from remax_ray.config import load_config
from remax_ray.driver.interrupts import GRACE_S

from helpers import free_ports, stop_process_tree

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WARNING = "records the Ray cluster of an earlier `ray start`"


def _record(ray_temp_dir: Path, address: str) -> Path:
    ray_temp_dir.mkdir(parents=True, exist_ok=True)
    path = ray_temp_dir / "ray_current_cluster"
    path.write_text(address)  # what `ray start` writes: the GCS address
    return path


@pytest.fixture
def ray_tmp() -> Path:
    """``RAY_TMPDIR`` for a subprocess; short, since Ray's Unix sockets live under it (<= 107 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="rx21"))
    yield root
    _kill_leftovers(root)
    shutil.rmtree(root, ignore_errors=True)


def _kill_leftovers(root: Path) -> None:
    """Ray processes of a local Ray a test started under ``root``: its reaper ends them once their
    driver is gone, and this waits for that (killing by id whatever is still there after 30 s)."""
    mine = [p for p in psutil.process_iter(["cmdline"]) if str(root) in " ".join(p.info["cmdline"] or [])]
    _, alive = psutil.wait_procs(mine, timeout=30)
    for p in alive:
        p.kill()


def _env(root: Path, **extra: str) -> dict[str, str]:
    # None of this process's Ray settings (RAY_ADDRESS above all): only the record under root counts.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=str(root), RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO),
               # Token auth as Ray 2.60 uses it, with a token of this test's, not ~/.ray's.
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), **extra)
    return env


# ----------------------------------------------------------------------- the lookup, in-process


def test_stale_record_is_one_warning_within_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (port,) = free_ports(1)
    record = _record(tmp_path, f"127.0.0.1:{port}")
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="remax_ray"):
        assert auto_join_address(str(tmp_path)) is None
    assert time.monotonic() - start < 5
    (line,) = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
    assert line.startswith(f"{record} {WARNING} (GCS at ")
    assert f":{port}), but no Ray answers there any more (ConnectionRefusedError" in line
    assert "Starting a local Ray instead; delete that file, or set cluster.address / RAY_ADDRESS" in line


def test_no_record_means_a_local_ray_without_a_word(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert recorded_address(str(tmp_path)) == (None, str(tmp_path / "ray_current_cluster"))
    assert auto_join_address(str(tmp_path)) is None
    assert not caplog.records


def test_live_record_is_joined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as server:  # Ray resolves 127.0.0.1 to the node's IP: listen on all of them
        server.bind(("", 0))
        server.listen()
        port = server.getsockname()[1]
        _record(tmp_path, f"127.0.0.1:{port}")
        address = auto_join_address(str(tmp_path))
    assert address is not None and address.endswith(f":{port}")
    # The very address ray.init() would join.
    from ray._private.services import canonicalize_bootstrap_address

    assert address == canonicalize_bootstrap_address(None, str(tmp_path))


def test_ray_tmpdir_places_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a temp dir, the lookup is Ray's default one: $RAY_TMPDIR/ray/ray_current_cluster."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    (port,) = free_ports(1)
    record = _record(tmp_path / "ray", f"10.9.8.7:{port}")
    assert recorded_address() == (f"10.9.8.7:{port}", str(record))


@pytest.fixture
def mocked_init(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls


def test_connect_starts_a_local_ray_past_a_stale_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        mocked_init: list[dict],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    (port,) = free_ports(1)
    _record(tmp_path / "ray", f"127.0.0.1:{port}")
    start = time.monotonic()
    cluster.connect(load_config(None, ["cluster.num_cpus=2"]), include_dashboard=False)
    assert time.monotonic() - start < 5
    # "local": a bare ray.init() would read the stale record again and retry it for minutes.
    assert mocked_init == [{"address": "local", "num_cpus": 2, "include_dashboard": False}]
    assert WARNING in caplog.text


def test_connect_joins_a_live_record_as_ray_init_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      mocked_init: list[dict]) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with socket.socket() as server:
        server.bind(("", 0))
        server.listen()
        _record(tmp_path / "ray", f"127.0.0.1:{server.getsockname()[1]}")
        cluster.connect(load_config(None, ["cluster.num_cpus=2"]))
    # No address (ray.init finds the record itself) and no num_cpus: the cluster's CPUs are its own.
    assert mocked_init == [{"include_dashboard": None}]


def test_connect_without_a_record_starts_a_local_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     mocked_init: list[dict]) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    cluster.connect(load_config())
    assert mocked_init == [{"address": "local", "num_cpus": None, "include_dashboard": None}]


# ------------------------------------------------- a real `ray start --head`, alive and then dead

DRIVER = textwrap.dedent("""
    import time
    import ray
    from remax_ray.cluster.actors import connect
    from remax_ray.config import load_config
    start = time.monotonic()
    connect(load_config(None, ["cluster.num_cpus=1"]), include_dashboard=False)
    print("CONNECTED", ray.get_runtime_context().gcs_address, f"{time.monotonic() - start:.1f}", flush=True)
    ray.shutdown()
""")


def _driver(root: Path, env: dict[str, str]) -> tuple[str, float, str]:
    """Run :func:`connect` with no address in a subprocess: ``(GCS address, seconds, stderr)``."""
    out = subprocess.run([sys.executable, "-c", DRIVER], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-4000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("CONNECTED")]
    _, gcs, seconds = line.split()
    return gcs, float(seconds), out.stderr


def test_live_ray_start_is_joined_and_a_dead_one_is_not_waited_for(ray_tmp: Path) -> None:
    env = _env(ray_tmp)
    ports = dict(zip(("port", "metrics-export-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                      "runtime-env-agent-port", "node-manager-port", "object-manager-port",
                      "ray-client-server-port"), free_ports(8)))
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--temp-dir", str(ray_tmp / "ray"), "--num-cpus", "1",
           "--include-dashboard", "false", "--disable-usage-stats",
           *[a for k, v in ports.items() for a in (f"--{k}", str(v))]]
    log = ray_tmp / "ray-start.log"
    record = ray_tmp / "ray" / "ray_current_cluster"
    with open(log, "w") as out:
        head = subprocess.Popen(cmd, env=env, cwd=ray_tmp, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not record.exists() or not record.read_text().strip():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        recorded = record.read_text().strip()
        assert recorded.endswith(f":{ports['port']}")

        gcs, _, stderr = _driver(ray_tmp, env)  # alive: joined without an address, as before
        assert gcs == recorded
        assert WARNING not in stderr
    finally:
        stop_process_tree(head)

    # The head is gone, its record is not: the situation.
    assert record.read_text().strip() == recorded
    gcs, seconds, stderr = _driver(ray_tmp, env)
    assert gcs != recorded  # a local Ray of its own
    assert f"{record} {WARNING} (GCS at {recorded})" in stderr
    print(f"dead head: connect() warned and started a local Ray in {seconds:.1f} s")
    assert seconds < 120  # the lookup takes well under a second; the rest is the local Ray's start


# ---------------------------------------------------------------- signals during start-up (CLI)


@pytest.fixture
def train_args(tmp_path: Path, model_dir: Path, prompts: Path) -> list[str]:
    return [sys.executable, "-m", "remax_ray.cli", "train", f"model.path={model_dir}", f"run.dataset={prompts}",
            "run.eval_prompts=2", "reward.kind=vader", f"run.output_dir={tmp_path / 'run'}", "cluster.num_cpus=1"]


def _restore_sigint() -> None:
    # As in a terminal: a shell that ran pytest in the background may have left SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum, codes", [(signal.SIGTERM, {15, 143}), (signal.SIGINT, {130})])
def test_signal_during_a_connection_retry_ends_the_cli_within_seconds(
        ray_tmp: Path, train_args: list[str], signum: int, codes: set[int]) -> None:
    """cluster.address names a socket that accepts and never answers: the TCP check passes and
    ray.init's GCS client waits in C++, where Python would not run a signal handler for ~40 s."""
    with socket.socket() as server:
        server.bind(("", 0))  # Ray turns 127.0.0.1 into the node's IP
        server.listen(16)
        server.settimeout(180)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        proc = subprocess.Popen([*train_args, f"cluster.address={address}"], env=_env(ray_tmp), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_restore_sigint)
        try:
            held = [server.accept()[0] for _ in range(2)]  # remax-ray's TCP check, then Ray's client
            time.sleep(1)
            assert proc.poll() is None, proc.communicate()
            proc.send_signal(signum)
            start = time.monotonic()
            _, stderr = proc.communicate(timeout=30)
            elapsed = time.monotonic() - start
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for conn in held:
            conn.close()
    print(f"{signal.Signals(signum).name}: exit {proc.returncode}, {elapsed:.1f} s after the signal")
    assert elapsed < GRACE_S + 4, f"{elapsed:.1f} s after the signal:\n{stderr[-3000:]}"
    assert proc.returncode in codes, stderr[-3000:]
    # 15: Ray's own SIGTERM handler (sys.exit) got its turn; else remax-ray's line says why it ended.
    assert proc.returncode == 15 or "during start-up" in stderr, stderr[-3000:]


def test_cli_with_a_stale_record_warns_within_seconds_and_stops_on_sigterm(
        ray_tmp: Path, train_args: list[str]) -> None:
    """The issue's run: no address, a record of a dead `ray start`. The warning follows preflight's
    last line within seconds; a local Ray starts under RAY_TMPDIR; SIGTERM then ends it all."""
    (port,) = free_ports(1)
    record = _record(ray_tmp / "ray", f"127.0.0.1:{port}")
    start = time.monotonic()
    proc = subprocess.Popen(train_args, env=_env(ray_tmp), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if WARNING in line:
                break
        warned = time.monotonic() - start
        assert WARNING in lines[-1], "".join(lines)[-4000:]
        deadline = time.monotonic() + 120
        while not list((ray_tmp / "ray").glob("session_2*")):  # the local Ray's own session
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)[-4000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        rest, _ = proc.communicate(timeout=30)
        elapsed = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert lines[-1].split(" remax_ray.cluster.address: ")[1].startswith(f"{record} {WARNING}")
    # Timestamps of the line before connect (preflight's) and of the warning: the lookup's cost.
    stamps = [line[:23] for line in lines if " remax_ray.driver.preflight: prompts:" in line or WARNING in line]
    first, last = (time.mktime(time.strptime(s[:19], "%Y-%m-%d %H:%M:%S")) + int(s[20:]) / 1000 for s in stamps)
    print(f"warning {warned:.1f} s after the start ({last - first:.2f} s after preflight); "
          f"exit {proc.returncode}, {elapsed:.1f} s after SIGTERM")
    assert last - first < 5
    assert warned < 120  # imports and preflight of the tiny model; minutes would mean Ray's retries
    assert elapsed < GRACE_S + 6, output[-3000:]
    assert proc.returncode in {15, 143}, output[-3000:]
    assert "Failed to connect to GCS" not in output
