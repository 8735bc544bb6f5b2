"""TensorBoard event files written by MetricsSink, read back with TensorBoard's own loader."""

from __future__ import annotations

import json

import pytest

from remax_ray.monitor import tb_events
from remax_ray.monitor.metrics import MetricsSink

pytest.importorskip("tensorboard")


def _step(i: int, scale: float = 1.0) -> dict[str, float]:
    return {"reward_sample": scale * i / 10, "kl": scale * i / 100, "generate_s": 2.0, "generated_tokens": 40.0 + i}


def test_each_record_becomes_scalars_at_its_step(tmp_path):
    sink = MetricsSink(tmp_path, use_ray=False)
    sink.log(0, {"eval_greedy_reward": 0.25})
    for i in range(3):
        sink.log(i, _step(i))
    sink.close()
    scalars = tb_events.read_scalars(tmp_path / "tensorboard")
    assert scalars["rewards/eval_greedy_reward"] == [(0, 0.25)]
    assert scalars["rewards/reward_sample"] == [(i, pytest.approx(i / 10)) for i in range(3)]
    assert scalars["training/kl"] == [(i, pytest.approx(i / 100)) for i in range(3)]
    # What the sink derives goes to every output, TensorBoard included.
    assert scalars["throughput/generate_tokens_per_s"] == [(i, (40.0 + i) / 2.0) for i in range(3)]
    assert set(scalars) == {"rewards/eval_greedy_reward", "rewards/reward_sample", "training/kl",
                            "seconds/generate_s", "throughput/generated_tokens",
                            "throughput/generate_tokens_per_s"}
    # One event per metrics.jsonl line, in the same order.
    assert [e.step for e in tb_events.summary_events(tmp_path / "tensorboard")] == [r["step"] for r in sink.read()]


def test_a_resume_leaves_each_step_once_with_the_new_values(tmp_path):
    first = MetricsSink(tmp_path, use_ray=False)
    first.log(0, {"eval_greedy_reward": 0.25})
    for i in range(2):
        first.log(i, _step(i))
    first.log(2, {"eval_greedy_reward": 0.5})  # the evaluation before the checkpoint after step 1
    for i in range(2, 5):  # written, then lost to a crash: the resume runs them again
        first.log(i, _step(i))
    first.close()
    kept_times = [e.wall_time for e in tb_events.summary_events(tmp_path / "tensorboard")][:4]
    # The driver dies; its files stay, torn last records included.
    (old,) = tb_events.event_files(tmp_path / "tensorboard")
    with open(old, "ab") as f:
        f.write(b"\x10\x00\x00\x00")
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "reward_sam')

    assert MetricsSink(tmp_path, use_ray=False).truncate(4) == 4  # what resume.py does
    second = MetricsSink(tmp_path, use_ray=False)
    for i in range(2, 5):
        second.log(i, _step(i, scale=2.0))  # a rerun may differ (here: on purpose)
    second.close()

    scalars = tb_events.read_scalars(tmp_path / "tensorboard")
    assert scalars["rewards/reward_sample"] == [(0, 0.0), (1, pytest.approx(0.1)), (2, pytest.approx(0.4)),
                                                (3, pytest.approx(0.6)), (4, pytest.approx(0.8))]
    # The evaluation logged at the checkpoint's own step survives (a purge_step would hide it).
    assert scalars["rewards/eval_greedy_reward"] == [(0, 0.25), (2, 0.5)]
    events = tb_events.summary_events(tmp_path / "tensorboard")
    assert [e.step for e in events] == [r["step"] for r in second.read()] == [0, 0, 1, 2, 2, 3, 4]
    assert [e.wall_time for e in events[:4]] == kept_times  # the kept records keep their times
    assert len(tb_events.event_files(tmp_path / "tensorboard")) == 2  # the rewrite and the new run's
    assert not old.exists()


def test_rewrite_rebuilds_missing_events_from_metrics_jsonl(tmp_path):
    """A run whose TensorBoard events are gone (or never written) gets them from metrics.jsonl."""
    records = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    tb_events.rewrite(tmp_path / "tensorboard", records[:2])
    assert tb_events.read_scalars(tmp_path / "tensorboard") == {
        "training/loss": [(0, 1.0), (1, 0.5)]}


def test_without_tensorboard_the_sink_still_writes_jsonl(tmp_path, monkeypatch):
    monkeypatch.setattr(tb_events, "available", lambda: False)
    sink = MetricsSink(tmp_path, use_ray=False)
    sink.log(0, {"loss": 1.0})
    assert sink.read() == [{"step": 0, "loss": 1.0}]
    assert not (tmp_path / "tensorboard").exists()
