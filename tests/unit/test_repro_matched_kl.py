"""Reward at matched KL on hand-made evaluation points."""

from __future__ import annotations

import math

import pytest

from remax_ray.repro.matched_kl import EvalPoint, common_kl, eval_points, final_kl, value_at_kl


def step(k, kl, **extra):
    return {"step": float(k), "step_s": 1.0, "kl": kl, **extra}


def ev(k, greedy, sample=None):
    rec = {"step": float(k), "eval_greedy_reward": greedy}
    return rec if sample is None else rec | {"eval_sample_reward": sample}


def test_eval_points_take_the_kl_of_the_step_that_evaluated_policy():
    records = [ev(0, 0.1, 0.0), step(0, 0.0), step(1, 0.02), ev(2, 0.3, 0.2), step(2, 0.05), step(3, 0.08),
               ev(4, 0.6, 0.5)]
    pts = eval_points(records)
    # Eval at step 2 = the policy after 2 updates = the one step 2's training record measured.
    # The final eval (step 4) has no step 4 record: step 3's KL, one update earlier.
    assert pts == [EvalPoint(0, 0.0, 0.1, 0.0), EvalPoint(2, 0.05, 0.3, 0.2), EvalPoint(4, 0.08, 0.6, 0.5)]
    assert final_kl(pts) == 0.08


def test_eval_points_without_measured_kl_or_samples():
    records = [ev(0, 0.1), step(0, 0.0, kl_measured=0.0), ev(1, 0.2)]
    pts = eval_points(records)
    assert all(math.isnan(p.kl) and math.isnan(p.sample) for p in pts)
    assert eval_points([ev(0, 0.1)])[0].kl != eval_points([ev(0, 0.1)])[0].kl  # NaN: no steps


def path(*pts):
    return [EvalPoint(i, kl, g, s) for i, (kl, g, s) in enumerate(pts)]


def test_interpolation_by_hand():
    p = path((0.0, 0.0, 1.0), (0.1, 1.0, 2.0), (0.3, 2.0, 4.0))
    assert value_at_kl(p, 0.05, "greedy") == pytest.approx(0.5)
    assert value_at_kl(p, 0.2, "sample") == pytest.approx(3.0)  # half-way from 0.1 to 0.3: 2 + 0.5 * 2
    assert value_at_kl(p, 0.3, "greedy") == pytest.approx(2.0)  # the end point itself
    assert value_at_kl(p, 0.0, "greedy") == 0.0
    assert math.isnan(value_at_kl(p, 0.4, "greedy"))  # never reached
    assert math.isnan(value_at_kl(p, float("nan"), "greedy"))


def test_a_noisy_path_is_read_at_its_first_crossing():
    p = path((0.0, 0.0, 0.0), (0.2, 1.0, 1.0), (0.1, 5.0, 5.0), (0.3, 9.0, 9.0))
    assert value_at_kl(p, 0.15, "greedy") == pytest.approx(0.75)


def test_common_kl_is_the_smallest_final_kl():
    a = path((0.0, 0, 0), (0.3, 1, 1))
    b = path((0.0, 0, 0), (0.1, 1, 1), (0.2, 2, 2))
    assert common_kl([a, b]) == 0.2
    assert math.isnan(common_kl([a, path((0.0, 0, 0), (float("nan"), 1, 1))]))
    assert math.isnan(common_kl([a, path((0.0, 0, 0), (-0.01, 1, 1))]))  # k1 noise below 0: no distance
    assert math.isnan(common_kl([]))
