"""Tests for remax_ray.monitor.metrics.MetricsSink without a Ray cluster."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from remax_ray.monitor.metrics import MetricsSink


def test_writes_one_json_line_per_log(tmp_path: Path) -> None:
    sink = MetricsSink(tmp_path / "run", use_ray=False)
    sink.log(0, {"loss": 1, "reward_sample": 0.25})
    sink.log(1, {"loss": 0.5, "reward_sample": 0.75})
    assert sink.path == tmp_path / "run" / "metrics.jsonl"  # the output folder is created
    lines = sink.path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 0, "loss": 1.0, "reward_sample": 0.25},
        {"step": 1, "loss": 0.5, "reward_sample": 0.75},
    ]


def test_read_returns_records_with_float_values(tmp_path: Path) -> None:
    sink = MetricsSink(tmp_path, use_ray=False)
    sink.log(3, {"sync_bytes": 1024, "kl": 0.125, "ok": True, "note": "x"})
    (rec,) = sink.read()
    assert rec == {"step": 3, "sync_bytes": 1024.0, "kl": 0.125, "ok": True, "note": "x"}
    assert type(rec["step"]) is int
    assert type(rec["sync_bytes"]) is float  # ints become floats
    assert type(rec["kl"]) is float
    assert rec["ok"] is True  # bools stay bools (not 1.0)


def test_read_without_file_is_empty(tmp_path: Path) -> None:
    assert MetricsSink(tmp_path / "fresh", use_ray=False).read() == []


def test_appends_across_sinks(tmp_path: Path) -> None:
    MetricsSink(tmp_path, use_ray=False).log(0, {"a": 1.0})
    sink = MetricsSink(tmp_path, use_ray=False)
    sink.log(1, {"a": 2.0})
    assert [r["a"] for r in sink.read()] == [1.0, 2.0]


def test_non_finite_values_round_trip(tmp_path: Path) -> None:
    sink = MetricsSink(tmp_path, use_ray=False)
    sink.log(0, {"grad_norm": float("inf"), "loss": float("nan")})
    (rec,) = sink.read()
    assert rec["grad_norm"] == math.inf and math.isnan(rec["loss"])


def test_use_ray_without_ray_initialised_does_not_fail(tmp_path: Path, monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    # Whole-suite runs may have a session Ray up (tests/integration): pretend it is down.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    sink = MetricsSink(tmp_path, run_name="r", use_ray=True)
    sink.log(0, {"loss": 1.5, "eval_greedy_reward": 0.0})
    assert sink.read() == [{"step": 0, "loss": 1.5, "eval_greedy_reward": 0.0}]
    assert sink._gauges == {}  # nothing exported, nothing created
