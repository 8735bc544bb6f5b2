"""Stored runs: complete ones are skipped, incomplete ones removed and redone, a changed
configuration refused by name; the report reads every complete run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from remax_ray.config import ConfigError
from remax_ray.repro.plan import plan_runs, task_base
from remax_ray.repro.storage import SUMMARY, check_stored, is_complete, pending, stored_runs, write_summary

from repro_fakes import records, store_run


def plan(out: Path, *overrides: str, algos=("remax", "ppo"), seeds=(0, 1)):
    return plan_runs({"sentiment": task_base(None, "sentiment", ["run.steps=4", *overrides])},
                     list(algos), list(seeds), out)


def test_complete_runs_are_skipped_and_incomplete_ones_removed(tmp_path, caplog):
    runs = plan(tmp_path)
    store_run(runs[0], records(0.5, 0.4))  # sentiment/remax-seed0: complete
    half = store_run(runs[1], records(0.5, 0.4)[:3], complete=False)  # ppo-seed0: stopped mid-run
    check_stored(runs, tmp_path)
    with caplog.at_level(logging.INFO, logger="remax_ray.repro.storage"):
        todo = pending(runs)
    assert [r.label for r in todo] == ["sentiment/ppo-seed0", "sentiment/remax-seed1", "sentiment/ppo-seed1"]
    assert not half.exists()  # removed, so metrics.jsonl starts empty when it runs again
    assert "sentiment/remax-seed0 is stored" in caplog.text
    assert "sentiment/ppo-seed0 has no summary.json" in caplog.text and "running it again" in caplog.text
    assert is_complete(runs[0].folder)


def test_a_stored_run_with_another_config_is_refused_by_key(tmp_path):
    store_run(plan(tmp_path)[0], records(0.5, 0.4))
    with pytest.raises(ConfigError, match=r"remax-seed0 was stored with another configuration than the "
                                          r"planned run \(learner.lr: stored 5e-05, planned 0.001\)"):
        check_stored(plan(tmp_path, "learner.lr=1e-3"), tmp_path)
    # Where it was written and how it showed progress are not what it computed.
    check_stored(plan(tmp_path, "run.progress=false", "run.keep_checkpoints=1"), tmp_path)


def test_a_new_seed_must_match_the_stored_runs_of_its_task(tmp_path):
    store_run(plan(tmp_path)[0], records(0.5, 0.4))
    # Seed 7 has no folder yet, but its task's stored runs used 4 steps: the table would mix them.
    with pytest.raises(ConfigError, match=r"planned runs of sentiment \(run.steps: stored 4, planned 6\)"):
        check_stored(plan(tmp_path, "run.steps=6", seeds=(7,)), tmp_path)
    check_stored(plan(tmp_path, algos=("rloo",), seeds=(7,)), tmp_path)  # estimator, seed, samples differ: fine


def test_summary_is_written_atomically(tmp_path):
    write_summary(tmp_path, {"a": 1.0, "load": float("nan")})
    assert json.loads((tmp_path / SUMMARY).read_text())["a"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY]  # no temporary file left


def test_stored_runs_reads_every_complete_run_by_task(tmp_path):
    runs = plan(tmp_path)
    for r in runs[:3]:
        store_run(r, records(0.5, 0.4))
    store_run(runs[3], records(0.5, 0.4), complete=False)
    by_task = stored_runs(tmp_path)
    assert list(by_task) == ["sentiment"]
    got = by_task["sentiment"]
    assert sorted((r.algo, r.seed) for r in got) == [("ppo", 0), ("remax", 0), ("remax", 1)]
    assert got[0].records and got[0].config["run"]["steps"] == 4 and got[0].meta["commit"] == "abc123"
    assert stored_runs(tmp_path / "nothing") == {}
