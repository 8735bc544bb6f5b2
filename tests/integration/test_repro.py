"""``remax-ray repro`` end to end on a tiny random Llama: three algorithms x two seeds, two steps each."""

from __future__ import annotations

import json
import math

import pytest

from remax_ray.cli import main

pytestmark = pytest.mark.integration

TOY_REWARD = "remax_ray.reward.functions:char_share_e"
ALGOS = ("remax", "ppo", "reinforce")


def test_repro_writes_table_claims_and_plot(ray_session, tmp_path, tiny_model, prompt_file):
    out = tmp_path / "repro"
    code = main(["repro", "--algos", ",".join(ALGOS), "--seeds", "0,1", "--out", str(out),
                 f"model.path={tiny_model}", f"run.dataset={prompt_file}", "run.steps=2",
                 "run.eval_every=0", "run.prompts_per_step=4", "run.eval_prompts=8",
                 "learner.micro_batch_size=4", "rollout.max_new_tokens=12", "rollout.max_prompt_tokens=32",
                 "reward.kind=function", f"reward.function={TOY_REWARD}", "learner.lr=1e-3",
                 # Two CPUs in the test cluster: generators and learner take turns, so reserve fractions.
                 "rollout.num_cpus_per_generator=0.25", "learner.num_cpus=0.25",
                 "cluster.threads_per_actor=2", "run.progress=false"])
    assert code == 0
    for name in ("results.md", "results.json", "reward.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "reward.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for algo in ALGOS:
        for seed in (0, 1):
            run = out / f"{algo}-seed{seed}"
            assert (run / "metrics.jsonl").exists() and (run / "config.yaml").exists()
            assert not (run / "checkpoints").exists()  # only metrics are kept by default

    doc = json.loads((out / "results.json").read_text())
    rows = {r["algo"]: r for r in doc["rows"]}
    assert list(rows) == list(ALGOS)
    for algo, r in rows.items():
        numbers = [r["final_reward_mean"], r["final_reward_std"], r["kl"], r["learner_state_bytes"],
                   r["learner_peak_rss_bytes"], r["grad_norm_var"], *r["phase_s"].values()]
        assert all(isinstance(x, float) and math.isfinite(x) for x in numbers), (algo, r)
    # PPO also holds a value model and its optimizer state.
    assert rows["ppo"]["learner_state_bytes"] > rows["remax"]["learner_state_bytes"]
    # The generators are shared, yet each run's generator serves that run's own learner from step 0:
    # vLLM's log-probs match the learner's (a previous run's trained weights would differ by ~1e-3).
    for algo in ALGOS:
        for seed in (0, 1):
            lines = (out / f"{algo}-seed{seed}" / "metrics.jsonl").read_text().splitlines()
            diffs = [json.loads(x)["logp_diff"] for x in lines if "logp_diff" in x]
            assert len(diffs) == 2 and max(diffs) < 1e-4, (algo, seed, diffs)
    for seed in (0, 1):  # ...and held-out prompts and base policy are the same for every algorithm
        assert len({r["eval_before"] for r in doc["runs"] if r["seed"] == seed}) == 1, doc["runs"]

    md = (out / "results.md").read_text()
    for algo in ALGOS:
        assert f"\n| {algo} | 1 | 0,1 | " in md
    assert "## Claims" in md and "| memory: learner state |" in md and "remax-ray repro --algos" in md
