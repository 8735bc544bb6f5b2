"""Truncated importance weights: hand-computed values, and the estimator they give (statistically)."""

from __future__ import annotations

import math

import pytest
import torch

from remax_ray.algo.offpolicy import truncated_importance_weights


def test_hand_computed_weights_and_stats():
    logp = torch.tensor([[math.log(0.5), math.log(0.9), 0.0]])
    behaviour = torch.tensor([[math.log(0.25), math.log(0.3), 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w, stats = truncated_importance_weights(logp, behaviour, mask, cap=2.0)
    assert torch.allclose(w, torch.tensor([[2.0, 2.0, 0.0]]))  # ratios 2 and 3 -> capped at 2
    assert stats["is_ratio_mean"] == pytest.approx(2.5) and stats["is_clip_frac"] == pytest.approx(0.5)
    assert stats["is_ratio_max"] == pytest.approx(3.0)
    w, _ = truncated_importance_weights(logp, behaviour, mask, cap=10.0)
    assert torch.allclose(w, torch.tensor([[2.0, 3.0, 0.0]]))


def test_weights_are_detached_and_one_on_policy():
    logp = torch.randn(3, 5, requires_grad=True)
    w, stats = truncated_importance_weights(logp, logp.detach(), torch.ones(3, 5), cap=2.0)
    assert not w.requires_grad and torch.allclose(w, torch.ones(3, 5))
    assert stats["is_clip_frac"] == 0.0 and stats["is_ratio_mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        truncated_importance_weights(logp, logp, torch.ones(3, 5), cap=0.0)


def test_weighted_samples_from_a_stale_policy_estimate_the_current_policys_gradient():
    """One-token bandit: samples from the behaviour policy mu, weighted by pi/mu, give the policy
    gradient of pi (exact expectation enumerated; the sample mean within 4 standard errors). With a
    cap below the largest ratio the estimate is biased, and the unweighted one is biased more."""
    torch.manual_seed(0)
    theta = torch.tensor([0.3, -0.2, 0.5, 0.0], requires_grad=True)
    mu = torch.softmax(torch.tensor([0.0, 0.4, 0.1, -0.3]), 0)
    reward = torch.tensor([1.0, -0.5, 2.0, 0.3])
    pi = torch.softmax(theta, 0)
    exact = torch.autograd.grad((pi * reward).sum(), theta)[0]

    def estimate(n: int, cap: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.multinomial(mu, n, replacement=True)
        logp_all = torch.log_softmax(theta, 0)
        logp = logp_all[a][None]
        w, _ = truncated_importance_weights(logp, torch.log(mu)[a][None], torch.ones(1, n), cap or 1e9)
        if cap == 0:
            w = torch.ones_like(w)
        grads = torch.stack([torch.autograd.grad(w[0, i] * reward[a[i]] * logp[0, i], theta,
                                                 retain_graph=True)[0] for i in range(n)])
        return grads.mean(0), grads.std(0) / math.sqrt(n)

    mean, se = estimate(4000, None)
    assert torch.all((mean - exact).abs() < 4 * se + 1e-6), (mean, exact, se)

    def expected(cap: float | None) -> torch.Tensor:  # exact expectation over the 4 actions under mu
        logp = torch.log_softmax(theta, 0)
        if cap is None:
            w = torch.ones(4)
        else:
            w, _ = truncated_importance_weights(logp[None], torch.log(mu)[None], torch.ones(1, 4), cap)
            w = w[0]
        return torch.autograd.grad((mu * w * reward * logp).sum(), theta)[0]

    ratio_max = float((pi / mu).detach().max())
    assert torch.allclose(expected(ratio_max + 1), exact, atol=1e-6)  # a cap never reached: unbiased
    bias = [float((expected(cap) - exact).detach().norm()) for cap in (1.0, 1.1, 1.2, ratio_max)]
    assert bias[0] > bias[1] > bias[2] > bias[3] and bias[3] < 1e-6  # the bias shrinks as the cap rises
