"""results.md / results.json rendering, and reward.png from hand-made records."""

from __future__ import annotations

import json
import math

from remax_ray.monitor.plots import eval_series, plot_rewards, step_series
from remax_ray.repro.claims import evaluate_claims
from remax_ray.repro.report import ReportContext, render_markdown, results_json, table
from remax_ray.repro.summary import aggregate, summarize_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def records(offset: float, grad: float = 1.0) -> list[dict]:
    out = [{"step": 0.0, "eval_greedy_reward": 0.1 + offset}]
    for i in range(4):
        out.append({"step": float(i), "reward_sample": 0.1 * i + offset, "kl": 0.01, "grad_norm": grad * (i + 1),
                    "generate_s": 1.0, "score_s": 0.1, "learn_s": 2.0, "sync_s": 0.5, "step_s": 3.6,
                    "learner_state_bytes": 3 * 2 ** 20, "learner_peak_rss_bytes": 10 * 2 ** 20,
                    "elapsed_s": 4.0 * (i + 1)})
    out.append({"step": 4.0, "eval_greedy_reward": 0.5 + offset})
    return out


def context() -> ReportContext:
    return ReportContext(command="remax-ray repro run.steps=4", config_yaml="run:\n  steps: 4\n",
                         overrides={"remax": ["algo.estimator=remax"], "ppo": ["algo.estimator=ppo"]},
                         steps=4, prompts_per_step=2, seeds=[0, 1], notes=["a note"])


def summaries():
    return [summarize_run(a, s, records(0.1 * s + (0.05 if a == "remax" else 0.0)))
            for s in (0, 1) for a in ("remax", "ppo")]


def test_markdown_has_a_row_per_algorithm_and_the_claims():
    rows = aggregate(summaries())
    md = render_markdown(rows, evaluate_claims(rows), context())
    lines = table(rows).splitlines()
    assert len(lines) == 2 + 2 and lines[2].startswith("| remax | 1 | 0,1 | 0.6000 ± 0.0707 |")
    assert "| 3.0 | 10.0 | n/a |" in lines[2]  # MiB of state and peak RSS; no CUDA peak on CPU
    assert "## Claims" in md and "| memory: learner state |" in md
    assert "| gradient variance: REINFORCE vs ReMax |" in md and "n/a: needs remax and reinforce" in md
    assert "```\nremax-ray repro run.steps=4\n```" in md
    assert "- ppo: `algo.estimator=ppo`" in md and "- a note" in md


def test_json_is_strict_and_complete():
    runs = summaries()
    rows = aggregate(runs)
    doc = json.loads(results_json(runs, rows, evaluate_claims(rows), context(), {"run": {"steps": 4}}),
                     parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert [r["algo"] for r in doc["rows"]] == ["remax", "ppo"]
    assert math.isclose(doc["rows"][0]["final_reward_mean"], 0.6)
    assert doc["rows"][0]["learner_cuda_peak_bytes"] is None  # NaN -> null
    assert len(doc["runs"]) == 4 and doc["command"] == "remax-ray repro run.steps=4"


def test_series_place_evaluations_after_their_step():
    recs = records(0.0)
    assert step_series(recs) == ([0.0, 1.0, 2.0, 3.0], [4.0, 8.0, 12.0, 16.0],
                                 [0.0, 0.1, 0.2, 0.30000000000000004])
    steps, clock, reward = eval_series(recs)
    assert steps == [0.0, 4.0] and clock == [0.0, 16.0] and reward == [0.1, 0.5]


def test_plot_writes_a_png(tmp_path):
    runs = {"remax": [records(0.0), records(0.1)], "ppo": [records(0.05)], "reinforce": [records(-0.1)]}
    path = plot_rewards(runs, tmp_path / "sub" / "reward.png")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    # IHDR: width and height, big-endian, right after the signature and chunk header.
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > height > 100  # two panels side by side
