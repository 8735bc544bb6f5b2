"""Tests for remax_ray.algo.kl."""

from __future__ import annotations

import math

import pytest
import torch

from remax_ray.algo.kl import KL_ESTIMATORS, KL_PLACEMENTS, kl_estimate, kl_loss


def test_constants() -> None:
    assert KL_ESTIMATORS == ("k1", "k2", "k3")
    assert KL_PLACEMENTS == ("reward", "loss")


def test_kl_estimate_by_hand() -> None:
    logp = torch.tensor([[math.log(0.5), math.log(0.25)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.5)]])
    # d = logp - ref = (log 2, -log 2)
    d = math.log(2.0)
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([[d, -d]]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k2"), torch.tensor([[0.5 * d * d, 0.5 * d * d]]))
    # k3 = ref/pi - log(ref/pi) - 1: (1/2 + log 2 - 1, 2 - log 2 - 1)
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), torch.tensor([[d - 0.5, 1.0 - d]]))
    # default is k1
    torch.testing.assert_close(kl_estimate(logp, ref), kl_estimate(logp, ref, "k1"))


def test_kl_estimate_unknown_kind() -> None:
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


def test_k3_is_finite_on_extreme_ratio() -> None:
    out = kl_estimate(torch.tensor([[0.0]]), torch.tensor([[200.0]]), "k3")
    assert torch.isfinite(out).all() and out.item() > 0


def test_kl_estimators_expectation_monte_carlo() -> None:
    # Two small categoricals; y ~ pi. k1 and k3 are unbiased for KL(pi||ref);
    # k2's mean is 0.5 * E[(log pi/ref)^2], which we compute exactly.
    pi = torch.tensor([0.6, 0.3, 0.1])
    ref = torch.tensor([0.3, 0.3, 0.4])
    true_kl = float((pi * (pi / ref).log()).sum())
    exact_k2 = float((pi * 0.5 * (pi / ref).log() ** 2).sum())
    gen = torch.Generator().manual_seed(1)
    m = 200_000
    y = torch.multinomial(pi, m, replacement=True, generator=gen)
    logp, ref_logp = pi.log()[y].unsqueeze(0), ref.log()[y].unsqueeze(0)
    for kind, target in (("k1", true_kl), ("k2", exact_k2), ("k3", true_kl)):
        samples = kl_estimate(logp, ref_logp, kind).double()
        # 5 standard errors of the sample mean: a CLT-level bound that a
        # correct estimator exceeds with probability ~6e-7 (fixed seed anyway).
        se = float(samples.std() / math.sqrt(m))
        assert abs(float(samples.mean()) - target) < 5 * se, (kind, float(samples.mean()), target)


def test_kl_loss_aggregates_and_scales() -> None:
    logp = torch.tensor([[0.0, 1.0], [2.0, 5.0]], requires_grad=True)
    ref = torch.zeros(2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # k1 per token (0, 1, 2, [5 masked]); token-mean = 3/3 = 1; times 0.5
    loss = kl_loss(logp, ref, mask, "k1", 0.5, "token-mean")
    torch.testing.assert_close(loss, torch.tensor(0.5))
    loss.backward()
    # d loss / d logp = 0.5 * mask / 3
    torch.testing.assert_close(logp.grad, mask * 0.5 / 3)
    # seq-sum with a global num_seqs of 4: (0 + 1 + 2) / 4 * 2
    out = kl_loss(logp, ref, mask, "k1", 2.0, "seq-sum", num_seqs=4)
    torch.testing.assert_close(out, torch.tensor(1.5))
