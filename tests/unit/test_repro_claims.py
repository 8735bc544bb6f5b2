"""The paper's claims as ratios, on hand-made rows."""

from __future__ import annotations

import math

import pytest

from remax_ray.repro.claims import evaluate_claims
from remax_ray.repro.summary import AlgoRow


def row(algo, reward, std, *, state=500.0, rss=1000.0, step_s=4.0, var=4.0, cuda=float("nan")):
    return AlgoRow(algo=algo, seeds=[0, 1], samples_per_prompt=1, final_reward_mean=reward,
                   final_reward_std=std, eval_before_mean=0.1, kl=0.01,
                   phase_s={"step_s": step_s}, learner_state_bytes=state, learner_peak_rss_bytes=rss,
                   learner_cuda_peak_bytes=cuda, grad_norm_var=var)


def by_name(claims):
    return {c.name: c for c in claims}


def test_all_claims_by_hand():
    rows = [row("remax", 0.6, math.sqrt(0.02), state=500.0, rss=1000.0, step_s=4.0, var=4.0),
            row("ppo", 0.65, 0.1, state=900.0, rss=1200.0, step_s=10.0),
            row("reinforce", 0.4, 0.1, var=10.0)]
    c = by_name(evaluate_claims(rows))
    ppo = c["reward: ReMax vs PPO"]
    # diff -0.05; noise sqrt(0.02/2 + 0.01/2) = 0.1225 -> within noise.
    assert ppo.holds is True and ppo.ratio == pytest.approx(0.6 / 0.65)
    assert "0.1225" in ppo.detail and "-0.05" in ppo.detail
    assert c["reward: ReMax vs REINFORCE"].holds is True
    assert c["reward: ReMax vs REINFORCE"].ratio == pytest.approx(1.5)
    state = c["memory: learner state"]
    assert state.ratio == pytest.approx(500 / 900) and state.holds is True
    rss = c["memory: learner peak RSS"]
    assert rss.ratio == pytest.approx(1000 / 1200) and rss.holds is False
    assert c["speed: seconds per step"].ratio == pytest.approx(0.4)
    assert c["speed: seconds per step"].holds is True
    var = c["gradient variance: REINFORCE vs ReMax"]
    assert var.ratio == pytest.approx(2.5) and var.holds is True
    assert "memory: learner CUDA peak" not in c  # CPU runs log no CUDA peak


def test_reward_below_ppo_beyond_noise_fails():
    c = by_name(evaluate_claims([row("remax", 0.6, 0.1), row("ppo", 0.8, 0.1)]))
    # diff -0.2 < -sqrt(0.01/2 + 0.01/2) = -0.1
    assert c["reward: ReMax vs PPO"].holds is False


def test_missing_algorithms_are_not_applicable():
    c = by_name(evaluate_claims([row("remax", 0.6, 0.1), row("reinforce", 0.7, 0.1)]))
    for name in ("reward: ReMax vs PPO", "memory: learner state", "speed: seconds per step"):
        assert c[name].holds is None and "n/a" in c[name].detail and math.isnan(c[name].ratio)
    assert c["reward: ReMax vs REINFORCE"].holds is False


def test_cuda_claim_when_both_measured():
    c = by_name(evaluate_claims([row("remax", 0.6, 0.1, cuda=50.0), row("ppo", 0.6, 0.1, cuda=100.0)]))
    assert c["memory: learner CUDA peak"].ratio == pytest.approx(0.5)
    assert c["memory: learner CUDA peak"].holds is True
