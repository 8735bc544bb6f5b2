"""The variance stage of ``remax-ray repro`` (remax_ray/repro/conditions.py): which policies it
measures, where it stores them, what it skips, and the report's section; no Ray, no model."""

from __future__ import annotations

import json
import logging

from remax_ray.config import load_config
from remax_ray.repro import conditions
from remax_ray.repro.command import trained_seeds
from remax_ray.repro.plan import plan_runs
from remax_ray.repro.report import variance_section


def _checkpoint(tmp_path, task="sentiment", seed=0, step="step-000024"):
    root = tmp_path / task / f"remax-seed{seed}" / "checkpoints"
    (root / step).mkdir(parents=True)
    (root / "latest").write_text(step + "\n")
    return root / step


def test_the_base_and_the_trained_policy_are_measured_into_the_task_folder(tmp_path):
    base = load_config(None, [])
    ckpt = _checkpoint(tmp_path)
    conds = conditions.conditions("sentiment", base, tmp_path, seed=0)
    assert [(c.label, c.policy, c.out) for c in conds] == [
        ("base", "builtin:smollm2-135m-instruct", tmp_path / "sentiment" / "variance-base.json"),
        ("trained", str(ckpt), tmp_path / "sentiment" / "variance-trained.json")]


def test_a_missing_checkpoint_leaves_the_trained_policy_unmeasured_with_a_warning(tmp_path, caplog, monkeypatch):
    base = load_config(None, [])
    conds = conditions.conditions("sentiment", base, tmp_path, seed=0)
    assert conds[1].policy == ""
    (tmp_path / "sentiment").mkdir()
    conds[0].out.write_text("{}")  # stored: skipped
    calls = []
    import remax_ray.repro.variance as variance

    monkeypatch.setattr(variance, "measure_variance", lambda *a, **k: calls.append(k))
    with caplog.at_level(logging.INFO):
        conditions.measure(conds, base, prompts=32, draws=32)
    assert calls == []
    assert "variance is stored" in caplog.text and "no remax checkpoint" in caplog.text


def test_only_pending_conditions_are_measured_with_the_task_config(tmp_path, monkeypatch):
    base = load_config(None, [])
    ckpt = _checkpoint(tmp_path)
    calls = []
    import remax_ray.repro.variance as variance

    monkeypatch.setattr(variance, "measure_variance", lambda cfg, **k: calls.append((cfg, k)))
    conditions.measure(conditions.conditions("sentiment", base, tmp_path, seed=0), base, prompts=32, draws=33)
    assert [(k["policy_label"], k["policy_path"], k["draws"]) for _, k in calls] == [
        ("base", "builtin:smollm2-135m-instruct", 33), ("trained", str(ckpt), 33)]
    assert all(cfg is base for cfg, _ in calls)


def test_the_trained_seed_is_remax_smallest_planned_seed_per_task(tmp_path):
    base = load_config(None, [])
    runs = plan_runs({"sentiment": base}, ["ppo", "remax"], [3, 1, 2], tmp_path)
    assert trained_seeds(runs) == {"sentiment": 1}
    assert trained_seeds(plan_runs({"sentiment": base}, ["ppo"], [0, 1], tmp_path)) == {}


def test_stored_records_are_read_base_first_and_the_report_says_when_none_exist(tmp_path):
    for label in ("trained", "base"):
        (tmp_path / f"variance-{label}.json").write_text(json.dumps({"policy": {"label": label}}))
    assert [r["policy"]["label"] for r in conditions.stored(tmp_path)] == ["base", "trained"]
    assert "not measured yet" in "\n".join(variance_section([]))


def test_a_task_measured_but_not_trained_yet_gets_its_variance_section(tmp_path):
    from test_variance_report import _record

    from remax_ray.repro.runner import write_report

    (tmp_path / "steered-sentiment").mkdir()
    (tmp_path / "steered-sentiment" / "variance-base.json").write_text(json.dumps(_record("steered-sentiment", 0.0)))
    write_report(tmp_path, command="remax-ray repro --report-only")
    md = (tmp_path / "results.md").read_text()
    assert "## Task: steered-sentiment\n\nNo training run of this task is stored yet." in md
    assert "#### Gradient variance" in md and "| steered-sentiment | base | 0 |" in md
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["variance_only_tasks"]["steered-sentiment"][0]["task"] == "steered-sentiment"
