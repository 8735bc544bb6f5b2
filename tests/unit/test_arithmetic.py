"""builtin:arithmetic: seeded problems with answers, built by the assets step, that a run trains on
with the exact-match reward reading the ``answer`` column."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from remax_ray.assets.arithmetic import arithmetic_rows, prepare_arithmetic
from remax_ray.config import load_config
from remax_ray.data.prompts import PromptKeys, load_splits
from remax_ray.driver.preflight import preflight
from remax_ray.driver.prepare import prepare_builtins_for_config
from remax_ray.reward.functions import exact_match

_PROBLEM = re.compile(r"^What is (\d+) ([+-]) (\d+)\? Answer with the number only\.$")


def test_rows_are_seeded_distinct_and_correct() -> None:
    train, held = arithmetic_rows()
    assert (len(train), len(held)) == (2000, 200)
    # Pinned: the same seed gives the same problems on every machine and Python version.
    assert held[0] == {"prompt": "What is 36 - 25? Answer with the number only.",
                       "messages": [{"role": "user", "content": "What is 36 - 25? Answer with the number only."}],
                       "answer": "11"}
    assert train[0]["prompt"] == "What is 5 + 34? Answer with the number only." and train[0]["answer"] == "39"
    assert arithmetic_rows() == (train, held)
    assert arithmetic_rows(seed=1) != (train, held)
    prompts = [r["prompt"] for r in train + held]
    assert len(set(prompts)) == len(prompts)  # no problem twice, so none held out is trained on
    for row in train + held:
        a, op, b = _PROBLEM.match(row["prompt"]).groups()
        assert row["answer"] == str(int(a) + int(b) if op == "+" else int(a) - int(b))
        assert int(row["answer"]) >= 0 and row["messages"] == [{"role": "user", "content": row["prompt"]}]
    # The reward scores each row's own answer as right and a neighbour's as wrong.
    answers = [r["answer"] for r in held]
    assert exact_match([""] * 200, answers, answers) == [1.0] * 200
    assert sum(exact_match([""] * 199, answers[1:], answers[:-1])) < 10


def test_prepare_builds_it_once_and_a_config_naming_it_prepares_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path))
    cfg = load_config(None, ["run.dataset=builtin:arithmetic", "reward.kind=vader", "model.path=unused"])
    prepare_builtins_for_config(cfg, log=lambda *_: None)
    out = tmp_path / "arithmetic"
    held = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert held == arithmetic_rows()[1]
    stamp = (out / "eval.jsonl").stat().st_mtime_ns
    assert prepare_arithmetic(log=lambda *_: None) == out and (out / "eval.jsonl").stat().st_mtime_ns == stamp
    splits = load_splits("builtin:arithmetic", eval_prompts=32, seed=0, keys=PromptKeys())
    assert (len(splits.train), len(splits.eval)) == (2000, 32)
    assert splits.eval[0] == held[0]["prompt"] and splits.eval_columns[0]["answer"] == "11"


def test_exact_match_on_arithmetic_passes_preflight(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path))
    prepare_arithmetic(log=lambda *_: None)
    cfg = load_config(None, [f"model.path={tiny_model}", "run.dataset=builtin:arithmetic", "reward.kind=function",
                             "reward.function=remax_ray.reward.functions:exact_match"])
    _, splits = preflight(cfg)
    assert splits.column_names() == {"answer", "messages"}


def test_unknown_builtin_dataset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: builtin:movie-reviews, builtin:steered-reviews, builtin:arithmetic"):
        load_splits("builtin:gsm8k", eval_prompts=1, seed=0)
