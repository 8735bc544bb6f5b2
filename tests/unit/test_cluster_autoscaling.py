"""A cluster that can add nodes: how the driver recognises its autoscaler from what Ray 2.60 leaves in
the GCS (parsers fed what Ray writes), and how the placement wait uses it (Ray mocked: the timeout
key, the progress lines). tests/integration/test_autoscaling.py runs it against Ray's own autoscaler.
"""

from __future__ import annotations

import logging
import time

import pytest
import ray
import ray.util

from remax_ray.cluster import autoscaling, placement
from remax_ray.cluster.autoscaling import Growth
from remax_ray.config import ConfigError, load_config

HEAD = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
# What Ray 2.60's v1 monitor wrote (trimmed): a local ray.init() (no autoscaling config: each node is
# mirrored as the type node_<id>) and a `ray start --autoscaling-config` head while it launches a node.
READONLY = {"autoscaler_report": {"active_nodes": {f"node_{HEAD}": 1}, "pending_nodes": [],
                                  "pending_launches": {}, "node_type_mapping": {HEAD: f"node_{HEAD}"}}}
LAUNCHING = {"autoscaler_report": {
    "active_nodes": {"ray.head.default": 1}, "pending_launches": {"gpu": 1},
    "pending_nodes": [["fffffffffffffffffffffffffffffffffffffffffffffffffff00001", "gpu", "uninitialized"]],
    "node_type_mapping": {HEAD: "ray.head.default", "fffffffffffffffffffffffffffffffffffffffffffffffffff00001": "gpu"}}}


def test_v1_status_without_an_autoscaling_config_cannot_grow():
    assert not autoscaling.from_v1_status(READONLY).can_grow
    assert not autoscaling.from_v1_status({}).can_grow  # the monitor has not reported yet


def test_v1_status_with_configured_node_types_grows_and_says_what_it_starts():
    growth = autoscaling.from_v1_status(LAUNCHING)
    assert growth.can_grow and growth.source == "v1 autoscaler"
    assert growth.pending == {"gpu": 2}  # one launch requested, one node booting
    assert growth.pending_text() == "starting 2 x gpu"
    idle = autoscaling.from_v1_status({"autoscaler_report": {"node_type_mapping": {HEAD: "headgroup"}}})
    assert idle.can_grow and idle.pending_text() == "no node launch reported yet"


def test_v2_status_grows_once_an_autoscaler_reported():
    assert not autoscaling.from_v2_status("0", []).can_grow  # the GCS answers even without one
    growth = autoscaling.from_v2_status("17", [("gpu", 1), ("gpu", 1), ("cpu", 2)])
    assert growth.can_grow and growth.pending == {"gpu": 2, "cpu": 2}


def test_published_cluster_config_gives_shapes_and_bounds():
    growth = autoscaling.from_cluster_config([("head", {"CPU": 8.0}, 1), ("gpu", {"CPU": 96.0, "GPU": 8.0}, 2)])
    assert growth.can_grow and growth.node_types["gpu"] == {"CPU": 96.0, "GPU": 8.0}
    assert autoscaling.most_resources(growth) == {"CPU": 200.0, "GPU": 16.0}
    assert autoscaling.most_resources(autoscaling.from_cluster_config([("gpu", {"GPU": 8.0}, -1)])) is None
    assert not autoscaling.from_cluster_config([("head", {"CPU": 8.0}, 0)]).can_grow  # no type may add a node


def test_bundles_no_node_can_hold():
    shapes = [{"CPU": 8.0}, {"CPU": 96.0, "GPU": 8.0}]
    assert autoscaling.bundles_no_node_can_hold([{"CPU": 2, "GPU": 1}, {"CPU": 100}, {"GPU": 9}], shapes) == [1, 2]


class _FakeRay:
    """placement_group / wait / remove as Ray's, for a group the cluster never places."""

    def __init__(self, monkeypatch, placed_after_s: float | None = None):
        self.removed, self.start = [], time.monotonic()
        self.placed_after_s = placed_after_s
        group = type("Group", (), {"ready": lambda _self: "ready-ref"})()
        monkeypatch.setattr(ray.util, "placement_group", lambda bundles, strategy: group)
        monkeypatch.setattr(ray.util, "remove_placement_group", self.removed.append)
        monkeypatch.setattr(ray, "wait", self.wait)
        monkeypatch.setattr(ray, "get", lambda ref: None)
        monkeypatch.setattr(placement, "_PROGRESS_EVERY_S", 0.05)

    def wait(self, refs, timeout):
        placed = self.placed_after_s is not None and time.monotonic() - self.start >= self.placed_after_s
        if not placed:
            time.sleep(timeout)
        return (refs, []) if placed else ([], refs)


def _cfg(tmp_path, *overrides):
    return load_config(None, [f"run.output_dir={tmp_path}/run", "cluster.placement_timeout_s=0.2",
                              "cluster.autoscale_timeout_s=0.4", *overrides])


def test_a_growing_cluster_gets_the_autoscale_timeout_and_progress_lines(tmp_path, monkeypatch, caplog):
    fake = _FakeRay(monkeypatch)
    monkeypatch.setattr(autoscaling, "read", lambda: Growth("v1 autoscaler", pending={"gpu": 2}))
    caplog.set_level(logging.INFO, logger="remax_ray")
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"within 0.4 s \(cluster.autoscale_timeout_s\): the autoscaler did not"):
        placement.create(_cfg(tmp_path), "cuda", Growth("v1 autoscaler"))
    assert time.monotonic() - t0 >= 0.4 and fake.removed  # waited the longer timeout, then freed the group
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("placement: waiting")]
    assert lines and lines[0].startswith(
        "placement: waiting for 2 bundles 2 x {CPU: 1, GPU: 1} (disaggregated, PACK); "
        "the v1 autoscaler is starting 2 x gpu: ")
    assert lines[-1].endswith("of 0.4 s (cluster.autoscale_timeout_s)")


def test_a_fixed_cluster_keeps_the_placement_timeout(tmp_path, monkeypatch):
    _FakeRay(monkeypatch)
    with pytest.raises(ConfigError, match=r"within 0.2 s \(cluster.placement_timeout_s\): no node"):
        placement.create(_cfg(tmp_path), "cuda", autoscaling.NO_GROWTH)
    with pytest.raises(ConfigError, match=r"cluster.placement_timeout_s"):
        placement.create(_cfg(tmp_path), "cuda")  # no growth given: a fixed cluster


def test_a_group_placed_while_waiting_is_returned(tmp_path, monkeypatch, caplog):
    fake = _FakeRay(monkeypatch, placed_after_s=0.1)
    caplog.set_level(logging.INFO, logger="remax_ray")
    monkeypatch.setattr(autoscaling, "read", lambda: Growth("v1 autoscaler", pending={"gpu": 1}))
    where = placement.create(_cfg(tmp_path), "cuda", Growth("v1 autoscaler"))
    assert where.plan.bundles == [{"CPU": 1, "GPU": 1}] * 2 and not fake.removed
    assert any(r.getMessage().startswith("placement: 2 bundles placed after") for r in caplog.records)


def test_autoscale_timeout_must_be_positive():
    with pytest.raises(ConfigError, match="cluster.autoscale_timeout_s"):
        load_config(None, ["cluster.autoscale_timeout_s=0"])
