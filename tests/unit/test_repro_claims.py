"""Per-arm intervals, paired verdicts at final and matched KL, and memory/speed beside the paper's
figures, on hand-made runs with hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from remax_ray.repro.arms import task_result
from remax_ray.repro.claims import (
    NONINFERIORITY_MARGIN,
    PLANNED_SEEDS,
    claim_verdicts,
    resource_rows,
    reward_verdicts,
    variance_ratio,
)
from remax_ray.repro.summary import summarize_run

from repro_fakes import records

MIB = 2 ** 20
PPO_KLS = (0.0, 0.04, 0.08, 0.12)  # PPO moves twice as far from the reference as the others


def run(algo, seed, greedy, *, kls=(0.0, 0.02, 0.04, 0.06), load=0.0, step_s=2.0, state=3 * MIB, rss=10 * MIB,
        grad=1.0):
    recs = records(greedy, greedy - 0.1, kls, step_s=step_s, state=state, rss=rss, grad=grad)
    return summarize_run(algo, seed, recs, 2 if algo == "rloo" else 1, task="sentiment", other_load=load)


def result():
    runs = []
    for seed, (remax, ppo, reinforce, rloo) in enumerate([(0.6, 0.5, 0.3, 0.9), (0.8, 0.5, 0.5, 1.1),
                                                          (0.7, 0.5, 0.4, 1.0)]):
        runs += [run("remax", seed, remax),
                 # seed 2 of PPO ran beside other work: its 100 s steps must not enter the table.
                 run("ppo", seed, ppo, kls=PPO_KLS, state=6 * MIB, rss=20 * MIB, step_s=100.0 if seed == 2 else 4.0,
                     load=0.5 if seed == 2 else 0.01),
                 run("reinforce", seed, reinforce, grad=2.0), run("rloo", seed, rloo)]
    return task_result("sentiment", runs)


def verdicts(planned=3):  # the hand-made table has 3 seeds; judged as if 3 were planned
    return {(v.claim.split(" (")[0], v.measure): v for v in reward_verdicts(result(), planned)}


def test_arms_have_intervals_and_the_common_kl():
    res = result()
    assert [a.algo for a in res.arms] == ["remax", "ppo", "reinforce", "rloo"]
    assert res.target_kl == pytest.approx(0.06)  # the smallest final KL
    remax = res.arm("remax")
    iv = remax.intervals["final_greedy"]  # 0.6, 0.8, 0.7: mean 0.7, sd 0.1, ± 4.303 * 0.1 / sqrt(3)
    assert iv.mean == pytest.approx(0.7) and iv.half_width == pytest.approx(0.2484, abs=1e-4)
    # PPO reaches KL 0.06 half-way between its evaluations at KL 0 (0.1 greedy, 0.0 sampled) and 0.12.
    ppo = res.arm("ppo")
    assert ppo.values["greedy_at_kl"] == {0: pytest.approx(0.3), 1: pytest.approx(0.3), 2: pytest.approx(0.3)}
    assert ppo.values["sample_at_kl"][0] == pytest.approx(0.2)
    assert remax.values["greedy_at_kl"][1] == pytest.approx(0.8)  # its final point is at 0.06
    assert res.arm("rloo").samples_per_prompt == 2


def test_verdicts_by_hand():
    v = verdicts()
    ppo = v["ReMax >= PPO", "final_greedy"]
    # diffs 0.1, 0.3, 0.2 -> [-0.048, 0.448], above -0.2: non-inferior.
    assert ppo.seeds == [0, 1, 2] and ppo.diff.lo == pytest.approx(-0.0484, abs=1e-4)
    assert ppo.verdict == "supported" and NONINFERIORITY_MARGIN == 0.2 and ppo.seeds_needed == 5
    at_kl = v["ReMax >= PPO", "greedy_at_kl"]  # diffs 0.3, 0.5, 0.4
    assert at_kl.diff.mean == pytest.approx(0.4) and at_kl.verdict == "supported"
    assert v["ReMax >= PPO", "sample_at_kl"].diff.mean == pytest.approx(0.4)  # 0.5-0.7 against 0.2
    reinforce = v["ReMax > REINFORCE", "final_sample"]  # 0.3 every seed: sd 0
    assert reinforce.diff.lo == pytest.approx(0.3) and reinforce.verdict == "supported"
    assert reinforce.seeds_needed == 2 and reinforce.paper
    rloo = v["ReMax > RLOO", "final_greedy"]
    assert rloo.verdict == "contradicted" and not rloo.paper  # -0.3 every seed
    missing = v["ReMax > REINFORCE with a batch-mean baseline", "all"]  # one row, not one per measure
    assert missing.verdict == "inconclusive (no reinforce_mean runs)" and missing.seeds == []


def test_before_the_planned_seeds_the_interval_shows_but_nothing_is_judged():
    assert PLANNED_SEEDS == 5
    ppo = {v.measure: v for v in reward_verdicts(result()) if v.claim.startswith("ReMax >= PPO")}["final_greedy"]
    assert ppo.diff.lo == pytest.approx(-0.0484, abs=1e-4)  # the same interval as when judged
    assert ppo.verdict == "inconclusive (3 of 5 planned seeds)"
    claims = {c.claim.split(" (")[0]: c for c in claim_verdicts(result())}
    assert claims["ReMax >= PPO"].verdict == "inconclusive (3 of 5 planned seeds)"


def test_one_verdict_per_claim_over_the_four_measures():
    claims = {c.claim.split(" (")[0]: c for c in claim_verdicts(result(), planned=3)}
    assert claims["ReMax >= PPO"].verdict == "supported" and claims["ReMax >= PPO"].seeds == [0, 1, 2]
    assert claims["ReMax > REINFORCE"].verdict == "supported"  # +0.3, +0.3, +0.3 on every measure
    rloo = claims["ReMax > RLOO"]  # -0.3 on every seed and measure: below 0 at any level
    assert rloo.verdict == "contradicted" and "98.75%" in rloo.why and not rloo.paper
    assert claims["ReMax > REINFORCE with a batch-mean baseline"].verdict == "inconclusive (no reinforce_mean runs)"


def test_a_claim_is_contradicted_only_past_the_bonferroni_level():
    # ReMax - REINFORCE = -0.1, -0.2, -0.3, -0.4, -0.05 on every measure: mean -0.21, sd 0.1432.
    # 95%: -0.21 + 2.776 * 0.1432 / sqrt(5) = -0.032 < 0, so each measure alone reads "contradicted";
    # at 98.75% (t_{0.99375, 4} = 4.315) the upper end is +0.066, so the claim over four looks is not.
    diffs = (-0.1, -0.2, -0.3, -0.4, -0.05)
    res = task_result("t", [run("remax", s, 0.5) for s in range(5)] +
                      [run("reinforce", s, 0.5 - d) for s, d in enumerate(diffs)])
    rows = [v for v in reward_verdicts(res) if v.claim == "ReMax > REINFORCE"]
    assert {v.verdict for v in rows} == {"contradicted"}
    assert rows[0].diff.hi == pytest.approx(-0.0322, abs=1e-3)
    claim = next(c for c in claim_verdicts(res) if c.claim == "ReMax > REINFORCE")
    assert claim.verdict == "inconclusive" and claim.why == "supported at 95% on 0 of 4 measures"


def test_one_seed_is_inconclusive_not_a_guess():
    res = task_result("t", [run("remax", 0, 0.9), run("ppo", 0, 0.1)])
    assert {v.verdict for v in reward_verdicts(res) if v.claim.startswith("ReMax >= PPO")} == {"inconclusive (n<2)"}


def test_resources_use_quiet_runs_beside_the_papers_figures():
    rows = resource_rows(result())
    state = next(r for r in rows if "learner state" in r.measure)
    assert state.ours == pytest.approx(0.5) and "all runs" in state.detail
    assert any("46%" in fig for _, fig, *_ in state.paper)
    rss = next(r for r in rows if "peak RSS" in r.measure)
    assert rss.ours == pytest.approx(0.5)  # 10 / 20 MiB over the quiet runs
    step = next(r for r in rows if "seconds per step" in r.measure)
    assert step.ours == pytest.approx(2.0)  # 4 s / 2 s: PPO's loaded 100 s steps are left out
    assert "PPO 2/3" in step.detail and any("2.2x" in fig for _, fig, *_ in step.paper)
    assert not any("CUDA" in r.measure for r in rows)  # not measured on CPU
    assert variance_ratio(result()) == pytest.approx(4.0)  # grad norms 2,4,6,8 against 1,2,3,4


def test_all_loaded_leaves_speed_unmeasured():
    res = task_result("t", [run("remax", s, 0.5, load=0.3) for s in (0, 1)] +
                      [run("ppo", s, 0.5, load=0.3) for s in (0, 1)])
    step = next(r for r in resource_rows(res) if "seconds per step" in r.measure)
    assert math.isnan(step.ours) and res.arm("ppo").quiet_seeds == []
    assert resource_rows(task_result("t", [run("remax", 0, 0.5)])) == []
