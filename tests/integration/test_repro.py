"""``remax-ray repro`` end to end on a tiny random Llama: two algorithms x two seeds, two steps each,
then a second sitting that redoes only the run whose summary.json is missing."""

from __future__ import annotations

import json
import math

import pytest

from remax_ray.cli import main

pytestmark = pytest.mark.integration

TOY_REWARD = "remax_ray.reward.functions:char_share_e"
ALGOS = ("remax", "ppo")


def argv(out, tiny_model, prompt_file, *extra):
    return ["repro", "--tasks", "sentiment", "--algos", ",".join(ALGOS), "--seeds", "0,1", "--out", str(out),
            "--variance-prompts", "4", "--variance-draws", "3",
            f"model.path={tiny_model}", f"run.dataset={prompt_file}", "run.steps=2",
            "run.eval_every=0", "run.prompts_per_step=4", "run.eval_prompts=8", "run.eval_samples=2",
            "learner.micro_batch_size=4", "rollout.max_new_tokens=12", "rollout.max_prompt_tokens=32",
            "reward.kind=function", f"reward.function={TOY_REWARD}", "learner.lr=1e-3",
            # Two CPUs in the test cluster: generators and learner take turns, so reserve fractions.
            "rollout.num_cpus_per_generator=0.25", "learner.num_cpus=0.25",
            "cluster.threads_per_actor=2", "run.progress=false", *extra]


def test_repro_stores_runs_reports_and_resumes(ray_session, tmp_path, tiny_model, prompt_file, capsys):
    out = tmp_path / "repro"
    assert main(argv(out, tiny_model, prompt_file)) == 0
    task = out / "sentiment"
    for name in ("results.md", "results.json"):
        assert (out / name).stat().st_size > 0, name
    for name in ("reward.png", "reward_kl.png"):
        assert (task / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for algo in ALGOS:
        for seed in (0, 1):
            run = task / f"{algo}-seed{seed}"
            assert (run / "metrics.jsonl").exists() and (run / "config.yaml").exists()
            meta = json.loads((run / "summary.json").read_text())
            assert meta["algo"] == algo and meta["seed"] == seed and meta["eval_prompts"] == 8
            assert 0.0 <= meta["other_load"] <= 1.0 and meta["commit"]
            # Only metrics are kept by default, except ReMax's first seed: the variance stage's
            # trained policy.
            assert (run / "checkpoints").exists() == ((algo, seed) == ("remax", 0)), (algo, seed)
            # The generators are shared, yet each run's generator serves that run's own learner from
            # step 0: vLLM's log-probs match the learner's (a previous run's weights would differ by ~1e-3).
            lines = (run / "metrics.jsonl").read_text().splitlines()
            diffs = [json.loads(x)["logp_diff"] for x in lines if "logp_diff" in x]
            assert len(diffs) == 2 and max(diffs) < 1e-4, (algo, seed, diffs)

    doc = json.loads((out / "results.json").read_text())["tasks"]["sentiment"]
    arms = {a["algo"]: a for a in doc["arms"]}
    assert list(arms) == list(ALGOS)
    for algo, a in arms.items():
        for measure in ("final_greedy", "final_sample"):
            iv = a["intervals"][measure]
            assert iv["n"] == 2 and all(math.isfinite(iv[k]) for k in ("mean", "lo", "hi")), (algo, measure)
        assert a["learner_state_bytes"] > 0
    # PPO also holds a value model and its optimizer state.
    assert arms["ppo"]["learner_state_bytes"] > arms["remax"]["learner_state_bytes"]
    assert {v["measure"] for v in doc["verdicts"] if v["claim"].startswith("ReMax >= PPO")} == \
        {"final_greedy", "final_sample", "greedy_at_kl", "sample_at_kl"}
    for seed in (0, 1):  # held-out prompts and base policy are the same for every algorithm
        assert len({r["eval_before"] for r in doc["runs"] if r["seed"] == seed}) == 1, doc["runs"]
    md = (out / "results.md").read_text()
    # The variance stage measured the base and the trained policy, on the same draws for each estimator.
    for label in ("base", "trained"):
        rec = json.loads((task / f"variance-{label}.json").read_text())
        assert rec["policy"]["label"] == label and (rec["prompts"], rec["draws"]) == (4, 3)
    assert "### The paper's condition at fixed parameters" in md and "| sentiment | trained | 0 |" in md
    assert "## Provenance" in md and "| ReMax >= PPO (margin 0.2) |" in md and "--algos remax,ppo" in md
    assert "**Evaluation below the repro's minimum**" in md  # 8 prompts x 2 samples here

    # A second sitting: one run "crashed" (no summary.json); only it runs again.
    kept = {p: p.stat().st_mtime_ns for p in task.glob("*/metrics.jsonl") if "ppo-seed1" not in str(p)}
    (task / "ppo-seed1" / "summary.json").unlink()
    capsys.readouterr()
    assert main(argv(out, tiny_model, prompt_file)) == 0
    err = capsys.readouterr().err
    assert "1 of 4 planned runs to make (3 stored)" in err
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (task / "ppo-seed1" / "summary.json").exists()
    lines = (task / "ppo-seed1" / "metrics.jsonl").read_text().splitlines()
    assert sum('"step_s"' in x for x in lines) == 2  # a fresh file, not appended to the old one

    # A changed configuration is refused before anything starts, naming the key.
    assert main(argv(out, tiny_model, prompt_file, "run.steps=3")) == 2
    assert "run.steps: stored 2, planned 3" in capsys.readouterr().err
