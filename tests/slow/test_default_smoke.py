"""The real default task, shortened: `remax-ray assets` then 2 steps of SmolLM2 + movie reviews + the
learned sentiment reward model (builtin:sentiment-rm)."""

from __future__ import annotations

import json
import math

import pytest

from remax_ray import cli
from remax_ray.assets.home import assets_home

pytestmark = pytest.mark.slow


def test_assets_then_two_default_steps(ray_session, tmp_path, capsys):
    assert cli.main(["assets"]) == 0
    prepared = capsys.readouterr().out
    assert "smollm2-135m-instruct" in prepared and "movie-reviews" in prepared
    assert "movie-pairs" in prepared and "sentiment-rm" in prepared
    assert "steered-reviews" in prepared and "steered-rm" in prepared  # the steered-sentiment task's
    rm_metrics = json.loads((assets_home() / "sentiment-rm" / "rm_metrics.json").read_text())
    assert rm_metrics["heldout_accuracy"] >= 0.7, rm_metrics  # measured 0.870 on 200 held-out pairs

    out = tmp_path / "run"
    # Shortened only in length: model, data, reward and algorithm are the embedded default's. A step
    # keeps 8 prompts (the default's micro-batch is 8 sequences, and a batch must fill whole ones);
    # 4 held-out prompts halve the two evaluations' generation.
    code = cli.main(["train", "run.steps=2", "run.eval_prompts=4", "run.prompts_per_step=8",
                     f"run.output_dir={out}", "run.progress=false"])
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.rindex("{\n"):])  # the summary is the last thing printed
    assert math.isfinite(summary["eval_before"]) and math.isfinite(summary["eval_after"])
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [s for s in steps if "reward_sample" in s]
    assert len(train) == 2
    for rec in train:
        assert all(math.isfinite(rec[k]) for k in ("loss", "grad_norm", "kl", "logp_diff"))
        assert rec["logp_diff"] < 1e-3 and rec["sync_bytes"] > 100e6  # 135M params really travel
    assert sum("eval_greedy_reward" in s for s in steps) == 2  # before and after
    assert (out / "checkpoints" / "step-000002" / "model.safetensors").exists()
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000002"
