"""Checks on the Ray address before :func:`remax_ray.cluster.actors.connect` joins a cluster.

``ray.init(address=...)`` retries an unreachable GCS for a long time before it fails, and a run
that finds Ray already initialised would otherwise ignore ``cluster.address`` without a word. Both
become one :class:`ConfigError` here, within seconds.
"""

from __future__ import annotations

import logging
import socket
from typing import Callable

from remax_ray.config import ConfigError

__all__ = ["auto_join_address", "check_agrees", "check_reachable", "current_gcs_address", "recorded_address",
           "split_address"]

log = logging.getLogger(__name__)

GCS_PORT = 6379  # ray start --head's default --port
CLIENT_PORT = 10001  # ray start --head's default --ray-client-server-port
CONNECT_TIMEOUT_S = 3.0


def split_address(address: str) -> tuple[str, int, bool]:
    """``(host, port, is_client)`` of ``host[:port]`` or ``ray://host[:port]`` (IPv6 in brackets)."""
    is_client = address.startswith("ray://")
    rest = address[len("ray://"):] if is_client else address
    rest = rest.split("/", 1)[0]  # a ray:// address may carry a path or query
    default = CLIENT_PORT if is_client else GCS_PORT
    if rest.startswith("["):  # [::1]:6379
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:  # a bare host, or a bare IPv6 address
        host, port_text = rest, ""
    if not host:
        raise ValueError(f"no host in Ray address {address!r}")
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        raise ValueError(f"bad port {port_text!r} in Ray address {address!r}") from None
    return host, port, is_client


def _auto_address() -> str | None:
    """The address ``ray.init(address="auto")`` would use, or None when no cluster runs here."""
    from ray._private import services  # private, but it is the very lookup ray.init makes

    try:
        return services.canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError:
        return None


def check_reachable(address: str, source: str, timeout: float = CONNECT_TIMEOUT_S,
                    auto: Callable[[], str | None] = _auto_address) -> None:
    """Raise :class:`ConfigError` naming ``source`` unless something listens at ``address``.

    A TCP connect to the GCS (or, for ``ray://``, the client server) port; ``auto`` is first
    resolved the way Ray resolves it. ``local`` starts a new Ray, so there is nothing to reach.
    """
    if address == "local":
        return
    shown = address
    if address == "auto":
        resolved = auto()
        if resolved is None:
            raise ConfigError(f"{source}=auto: no running Ray cluster was found on this machine; "
                              "start one (ray start --head) or leave the address empty for a local Ray")
        shown, address = f"auto (resolved to {resolved})", resolved
    try:
        host, port, _ = split_address(address)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{source}={shown}: no Ray cluster answers at {host}:{port} "
            f"({type(exc).__name__}: {exc}); start one there (ray start --head), fix the address, "
            "or leave cluster.address and RAY_ADDRESS empty to start a local Ray"
        ) from None


def recorded_address(temp_dir: str | None = None) -> tuple[str | None, str]:
    """``(address, record file)``: the cluster ``ray.init()`` without an address joins, or None.

    Ray's own lookup: ``RAY_ADDRESS`` if set, else the GCS address the last ``ray start`` on this
    machine wrote to ``ray_current_cluster`` in Ray's temp dir (``temp_dir``; by default
    ``$RAY_TMPDIR/ray``, else ``$TMPDIR/ray``, else ``/tmp/ray``). None: ray.init() starts a local Ray.
    """
    from ray._common.utils import get_ray_address_file
    from ray._private import services  # private, but it is the very lookup ray.init makes

    record = get_ray_address_file(temp_dir)
    try:
        return services.canonicalize_bootstrap_address(None, temp_dir), record
    except ValueError:  # a record ray.init could not parse either: nothing to join
        log.warning("ignoring %s: it holds no Ray address", record)
        return None, record


def auto_join_address(temp_dir: str | None = None, timeout: float = CONNECT_TIMEOUT_S,
                      lookup: Callable[[str | None], tuple[str | None, str]] = recorded_address) -> str | None:
    """The live cluster a ``ray.init()`` without an address would join, or None: start a local Ray.

    The record of the last ``ray start`` outlives its cluster (a crash, a kill, a reboot), and
    ray.init() would retry that dead GCS for about 14 minutes. The recorded address gets the
    same quick TCP check as ``cluster.address``; a dead one is one warning, and None.
    """
    address, record = lookup(temp_dir)
    if address is None:
        return None
    try:
        host, port, _ = split_address(address)
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        log.warning(
            "%s records the Ray cluster of an earlier `ray start` (GCS at %s), but no Ray answers there "
            "any more (%s: %s): that cluster has stopped. Starting a local Ray instead; delete that "
            "file, or set cluster.address / RAY_ADDRESS to join a cluster", record, address,
            type(exc).__name__, exc)
        return None
    return address


def current_gcs_address() -> str | None:
    """The GCS address of the initialised Ray driver, or None when it cannot be told (client mode)."""
    import ray

    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - e.g. a ray:// client session has no GCS client
        return None


def _ips(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return {host}


def _local_ips() -> set[str]:
    local = _ips(socket.gethostname()) | {"127.0.0.1", "::1"}
    try:  # the address Ray itself gives this node (its GCS address uses it), e.g. the outbound one
        from ray.util import get_node_ip_address

        local.add(get_node_ip_address())
    except Exception:  # noqa: BLE001 - without it, the host name's addresses still count
        pass
    return local


def _is_local(host: str) -> bool:
    local = _local_ips()
    return any(ip in local or ip.startswith("127.") for ip in _ips(host))


def _same_host(a: str, b: str) -> bool:
    # Ray reports the node's IP where a user may write localhost or the host name.
    return bool(_ips(a) & _ips(b)) or (_is_local(a) and _is_local(b))


def check_agrees(requested: str, current: Callable[[], str | None] = current_gcs_address) -> None:
    """Raise :class:`ConfigError` when Ray is initialised on another cluster than ``requested``.

    An empty address or ``auto`` means "whatever Ray is running" and always agrees; ``local``
    agrees with a Ray whose GCS runs on this machine.
    """
    if requested in ("", "auto"):
        return
    gcs = current()
    if gcs is None:
        log.warning("Ray is already initialised and its address cannot be read; cluster.address=%s "
                    "was not checked against it", requested)
        return
    gcs_host, gcs_port, _ = split_address(gcs)
    if requested == "local":
        if _is_local(gcs_host):
            return
    else:
        host, port, is_client = split_address(requested)
        # A ray:// address names the client server, not the GCS: only its host can be compared.
        if _same_host(host, gcs_host) and (is_client or port == gcs_port):
            return
    raise ConfigError(
        f"cluster.address={requested} disagrees with the Ray session already initialised in this "
        f"process (GCS at {gcs}); use that address, leave cluster.address empty, or call "
        "ray.shutdown() first"
    )
