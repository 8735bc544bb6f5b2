"""remax_ray.repro.summary on hand-made metrics records, against hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from remax_ray.repro.summary import sample_var, summarize_run


def step(i, gen, score, learn, sync, kl, grad, rss, elapsed, **extra):
    return {"step": float(i), "generate_s": gen, "score_s": score, "learn_s": learn, "sync_s": sync,
            "step_s": gen + score + learn + sync, "kl": kl, "grad_norm": grad, "reward_sample": 0.1,
            "learner_state_bytes": 500.0, "learner_peak_rss_bytes": rss, "elapsed_s": elapsed, **extra}


def run_records(final: float) -> list[dict]:
    return [
        {"step": 0.0, "eval_greedy_reward": 0.2, "eval_sample_reward": 0.1},
        step(0, 10.0, 1.0, 5.0, 2.0, kl=0.4, grad=1.0, rss=1000.0, elapsed=20.0),
        step(1, 2.0, 0.1, 3.0, 1.0, kl=0.1, grad=2.0, rss=1200.0, elapsed=27.0),
        {"step": 2.0, "eval_greedy_reward": 0.3},
        step(2, 4.0, 0.3, 5.0, 1.0, kl=0.2, grad=3.0, rss=1100.0, elapsed=40.0),
        step(3, 3.0, 0.2, 4.0, 1.0, kl=0.3, grad=6.0, rss=1300.0, elapsed=50.0),
        {"step": 4.0, "eval_greedy_reward": final, "eval_sample_reward": final - 0.3},
    ]


def test_one_run_by_hand():
    s = summarize_run("remax", 0, run_records(0.5), task="sentiment", other_load=0.01)
    assert s.steps == 4 and s.eval_before == 0.2 and s.final_greedy == 0.5
    assert s.final_sample == pytest.approx(0.2) and s.task == "sentiment" and s.quiet
    assert s.kl == pytest.approx(0.3)  # last quarter of 4 steps = step 3 alone
    # Evaluations at steps 0, 2, 4 get the KL of steps 0, 2 and (the last step) 3.
    assert [(p.step, p.kl) for p in s.points] == [(0, 0.4), (2, 0.2), (4, 0.3)] and s.final_kl == 0.3
    # Steps 1-3 only: step 0 warms up.
    assert s.phase_s["generate_s"] == pytest.approx(3.0)
    assert s.phase_s["score_s"] == pytest.approx(0.2)
    assert s.phase_s["learn_s"] == pytest.approx(4.0)
    assert s.phase_s["sync_s"] == pytest.approx(1.0)
    assert s.phase_s["step_s"] == pytest.approx((6.1 + 10.3 + 8.2) / 3)
    # grad norms 1, 2, 3, 6: mean 3, squared deviations 4 + 1 + 0 + 9 = 14, / (4 - 1).
    assert s.grad_norm_var == pytest.approx(14 / 3)
    assert s.learner_peak_rss_bytes == 1300.0 and s.learner_state_bytes == 500.0
    assert math.isnan(s.learner_cuda_peak_bytes)  # not logged on CPU: n/a, not 0
    assert s.wall_s == 50.0


def test_last_quarter_rounds_up_and_order_does_not_matter():
    recs = [step(i, 1.0, 1.0, 1.0, 1.0, kl=float(i), grad=1.0, rss=1.0, elapsed=i) for i in range(5)]
    s = summarize_run("ppo", 1, list(reversed(recs)))
    assert s.kl == pytest.approx((3 + 4) / 2)  # ceil(5 / 4) = 2 steps
    recs = [step(i, 1.0, 1.0, 1.0, 1.0, kl=float(i), grad=1.0, rss=1.0, elapsed=i) for i in range(8)]
    assert summarize_run("ppo", 1, recs).kl == pytest.approx(6.5)


def test_wall_falls_back_to_summed_step_times():
    recs = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in run_records(0.5)]
    assert summarize_run("remax", 0, recs).wall_s == pytest.approx(18 + 6.1 + 10.3 + 8.2)


def test_no_steps_is_an_error():
    with pytest.raises(ValueError, match="remax seed 3: no step records"):
        summarize_run("remax", 3, [{"step": 0.0, "eval_greedy_reward": 0.1}])


def test_single_step_has_no_timing_or_variance():
    s = summarize_run("remax", 0, [step(0, 1.0, 1.0, 1.0, 1.0, kl=0.1, grad=1.0, rss=1.0, elapsed=4.0)])
    assert math.isnan(s.phase_s["step_s"]) and math.isnan(s.grad_norm_var)


def test_sample_var():
    assert sample_var([1.0, 2.0, 3.0, 6.0]) == pytest.approx(14 / 3)
    assert math.isnan(sample_var([1.0]))


def test_load_unknown_is_not_quiet():
    assert not summarize_run("remax", 0, run_records(0.5)).quiet
    assert not summarize_run("remax", 0, run_records(0.5), other_load=0.2).quiet
