"""Bad-input matrix, cluster rows: an address where no Ray runs fails within seconds, and a
cluster.address that disagrees with an already-initialised Ray is a ConfigError.

No test here leaves Ray initialised in this process (the integration tests share one session): Ray
is mocked, and the one test with a real Ray runs it in a subprocess.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
import types

import pytest
import ray

from remax_ray.cluster import actors as cluster
from remax_ray.cluster.address import check_agrees, check_reachable, split_address
from remax_ray.config import ConfigError, load_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray looks uninitialised, and starting it fails the test: the check must come first."""
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def init(*args, **kwargs):
        raise AssertionError(f"ray.init was called with {kwargs}")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.mark.parametrize("address, expected", [
    ("10.0.0.5:6380", ("10.0.0.5", 6380, False)),
    ("head-node", ("head-node", 6379, False)),
    ("ray://head-node", ("head-node", 10001, True)),
    ("ray://10.0.0.5:10002", ("10.0.0.5", 10002, True)),
    ("ray://10.0.0.5:10002/?x=1", ("10.0.0.5", 10002, True)),
    ("[::1]:6379", ("::1", 6379, False)),
    ("::1", ("::1", 6379, False)),
])
def test_split_address(address: str, expected: tuple) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address, message", [(":6379", "no host"), ("h:port", "bad port 'port'")])
def test_split_address_errors(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_address(address)


@pytest.mark.parametrize("form", ["{port}", "ray://{port}"])
def test_unreachable_cluster_address_fails_within_seconds(no_ray, form: str) -> None:
    port = _free_port()
    address = form.format(port=f"127.0.0.1:{port}")
    cfg = load_config(None, [f"cluster.address={address}"])
    start = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        cluster.connect(cfg)
    assert time.monotonic() - start < 10
    assert str(exc.value).startswith(f"cluster.address={address}: no Ray cluster answers at 127.0.0.1:{port} "
                                     "(ConnectionRefusedError")


def test_unreachable_ray_address_env_is_named(no_ray, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"^RAY_ADDRESS=127.0.0.1:{port}: no Ray cluster answers"):
        cluster.connect(load_config())
    assert time.monotonic() - start < 10


def test_cluster_address_wins_over_ray_address(no_ray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    port = _free_port()
    with pytest.raises(ConfigError, match=rf"^cluster.address=127.0.0.1:{port}: "):
        cluster.connect(load_config(None, [f"cluster.address=127.0.0.1:{port}"]))


def test_reachable_address_reaches_ray_init(no_ray, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    with socket.socket() as server:  # something listens: the check passes and ray.init is next
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        cluster.connect(load_config(None, [f"cluster.address={address}"]))
    assert calls == [{"address": address}]


def test_auto_without_a_running_cluster() -> None:
    with pytest.raises(ConfigError, match="^cluster.address=auto: no running Ray cluster was found"):
        check_reachable("auto", "cluster.address", auto=lambda: None)
    port = _free_port()
    with pytest.raises(ConfigError, match=rf"^RAY_ADDRESS=auto \(resolved to 127.0.0.1:{port}\): no Ray"):
        check_reachable("auto", "RAY_ADDRESS", auto=lambda: f"127.0.0.1:{port}")
    check_reachable("local", "cluster.address", auto=lambda: pytest.fail("local needs no lookup"))


# ----------------------------------------------------------------------- already initialised


@pytest.mark.parametrize("requested", ["", "auto", "10.1.2.3:6379", "ray://10.1.2.3:10001"])
def test_agreeing_addresses(requested: str) -> None:
    check_agrees(requested, current=lambda: "10.1.2.3:6379")


@pytest.mark.parametrize("requested", ["10.1.2.4:6379", "10.1.2.3:6380", "ray://10.9.9.9", "local"])
def test_disagreeing_addresses(requested: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check_agrees(requested, current=lambda: "10.1.2.3:6379")
    assert str(exc.value).startswith(f"cluster.address={requested} disagrees with the Ray session already "
                                     "initialised in this process (GCS at 10.1.2.3:6379)")


def test_localhost_agrees_with_a_local_gcs() -> None:
    from ray.util import get_node_ip_address

    # Ray names a local GCS by the node's IP, which the host name need not resolve to.
    for local_ip in {socket.gethostbyname(socket.gethostname()), get_node_ip_address()}:
        for requested in ("127.0.0.1:6379", "localhost:6379", "local"):
            check_agrees(requested, current=lambda: f"{local_ip}:6379")


def test_unknown_current_address_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    check_agrees("10.1.2.3:6379", current=lambda: None)
    assert "was not checked" in caplog.text


def test_connect_reports_disagreement_with_initialised_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: types.SimpleNamespace(gcs_address="10.1.2.3:6379"))
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("already initialised: no ray.init"))
    cluster.connect(load_config(None, ["cluster.address=10.1.2.3:6379"]))
    cluster.connect(load_config())
    with pytest.raises(ConfigError, match="^cluster.address=10.7.7.7:6379 disagrees"):
        cluster.connect(load_config(None, ["cluster.address=10.7.7.7:6379"]))


def test_disagreement_with_a_real_ray_session() -> None:
    """In a subprocess, so that this process's Ray state stays untouched."""
    script = textwrap.dedent("""
        import ray
        from remax_ray.cluster.actors import connect
        from remax_ray.config import ConfigError, load_config
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        gcs = ray.get_runtime_context().gcs_address
        port = gcs.rsplit(":", 1)[1]
        for address in ["", gcs, "127.0.0.1:" + port]:
            connect(load_config(None, ["cluster.address=" + address]))
        try:
            connect(load_config(None, ["cluster.address=127.0.0.1:" + str(int(port) + 1)]))
        except ConfigError as exc:
            print("REFUSED", exc)
        ray.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("REFUSED")]
    assert "disagrees with the Ray session already initialised in this process (GCS at " in line
