"""Whether the Ray cluster can add nodes, and which ones it is adding: what the driver needs so that a
run on a cluster that starts small (KubeRay worker groups, `ray up` node types with min 0) asks for
its placement group and waits for the autoscaler instead of refusing what the nodes up now lack.

Ray 2.60 has no public call that lists an autoscaler's node types, so :func:`read` asks the GCS, in
this order, for what the autoscalers leave there:

1. the cluster config an autoscaler may publish: node types with the resources of one node and a
   max count (``ray._private.state.state.get_cluster_config()``, the call Ray Train's own resource
   pre-check makes). Ray 2.60's autoscalers do not publish it yet; where one does, bundles that no
   node type can hold are refused at once.
2. the v1 autoscaler's status (``ray up``, KubeRay without ``autoscalerOptions.version``): what its
   monitor writes each round and ``ray status`` prints (internal KV ``__autoscaling_status``). With an
   autoscaling config its node types carry the config's names; without one (a manual ``ray start``, a
   local ``ray.init``) the monitor mirrors each live node as a type ``node_<node id>``, which cannot
   grow.
3. the v2 autoscaler (KubeRay ``autoscalerOptions.version: v2``): ``ray.autoscaler.v2.sdk.
   get_cluster_status``, whose autoscaler state version stays 0 until an autoscaler reports.

The parsers are pure (tests feed them what Ray writes); :func:`read` is the Ray side and never
raises: a source it cannot read counts as "no autoscaler".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

V1_STATUS_KEY = "__autoscaling_status"  # ray._private.ray_constants.DEBUG_AUTOSCALING_STATUS
READONLY_TYPE_PREFIX = "node_"  # the v1 monitor's mirror of a node it did not launch


@dataclass(frozen=True)
class Growth:
    """What the cluster's autoscaler can add. ``source`` is empty when no autoscaler was found."""

    source: str = ""
    node_types: dict[str, dict[str, float]] = field(default_factory=dict)
    """Resources of one node of each type, where the source says (only the published config does)."""
    max_nodes: dict[str, int] = field(default_factory=dict)
    """Most nodes of each type (-1: no bound), where the source says."""
    pending: dict[str, int] = field(default_factory=dict)
    """Nodes being launched or started now, by type."""

    @property
    def can_grow(self) -> bool:
        return bool(self.source) and (not self.max_nodes or any(n != 0 for n in self.max_nodes.values()))

    def pending_text(self) -> str:
        if not self.pending:
            return "no node launch reported yet"
        return "starting " + ", ".join(f"{n} x {t}" for t, n in sorted(self.pending.items()))


NO_GROWTH = Growth()


def from_cluster_config(groups: list[tuple[str, dict[str, float], int]]) -> Growth:
    """``(name, resources of one node, max count)`` per node group of a published cluster config."""
    if not groups:
        return NO_GROWTH
    return Growth("cluster config", {name: dict(res) for name, res, _ in groups},
                  {name: int(count) for name, _, count in groups})


def from_v1_status(status: dict[str, Any]) -> Growth:
    """The v1 monitor's status dict (``autoscaler_report`` is its StandardAutoscaler's summary)."""
    report = status.get("autoscaler_report") or {}
    mapping = report.get("node_type_mapping") or {}
    configured = [t for node, t in mapping.items() if t != READONLY_TYPE_PREFIX + node]
    if not configured:
        return NO_GROWTH
    pending = dict(report.get("pending_launches") or {})
    for _ip, node_type, _status in report.get("pending_nodes") or []:
        pending[node_type] = pending.get(node_type, 0) + 1
    return Growth("v1 autoscaler", pending=pending)


def from_v2_status(autoscaler_version: str, launches: list[tuple[str, int]]) -> Growth:
    """The v2 cluster status: its autoscaler state version and (node type, count) being launched."""
    if str(autoscaler_version) in ("", "0"):
        return NO_GROWTH
    pending: dict[str, int] = {}
    for node_type, count in launches:
        pending[node_type] = pending.get(node_type, 0) + count
    return Growth("v2 autoscaler", pending=pending)


def bundles_no_node_can_hold(bundles: list[dict[str, float]], shapes: list[dict[str, float]]) -> list[int]:
    """Indices of the bundles that fit in none of ``shapes`` (a node's total resources each)."""
    def fits(bundle: dict[str, float], shape: dict[str, float]) -> bool:
        return all(shape.get(k, 0) >= v for k, v in bundle.items())
    return [i for i, b in enumerate(bundles) if not any(fits(b, s) for s in shapes)]


def most_resources(growth: Growth) -> dict[str, float] | None:
    """The cluster's resources with every node type at its max count (None: unknown or unbounded)."""
    if not growth.node_types or any(growth.max_nodes.get(t, -1) < 0 for t in growth.node_types):
        return None
    most: dict[str, float] = {}
    for node_type, shape in growth.node_types.items():
        for k, v in shape.items():
            most[k] = most.get(k, 0) + v * growth.max_nodes[node_type]
    return most


def read() -> Growth:
    """What this driver's cluster can add (NO_GROWTH when no source answers)."""
    for reader in (_published_config, _v1, _v2):
        try:
            growth = reader()
        except Exception:  # a source this Ray lacks, or one not written yet: try the next
            continue
        if growth.source:
            return growth
    return NO_GROWTH


def _published_config() -> Growth:
    from ray._private import state

    config = state.state.get_cluster_config()
    if config is None:
        return NO_GROWTH
    return from_cluster_config([(g.name, {k: float(v) for k, v in g.resources.items()}, g.max_count)
                                for g in config.node_group_configs])


def _v1() -> Growth:
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(V1_STATUS_KEY)
    return from_v1_status(json.loads(raw)) if raw else NO_GROWTH


def _v2() -> Growth:
    import ray
    from ray.autoscaler.v2.sdk import get_cluster_status

    status = get_cluster_status(ray.get_runtime_context().gcs_address)
    launches = [(r.ray_node_type_name, r.count) for r in status.pending_launches]
    launches += [(n.ray_node_type_name, 1) for n in status.pending_nodes]
    return from_v2_status(status.stats.autoscaler_version, launches)
