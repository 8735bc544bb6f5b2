"""KL in the loss must pull toward the reference: expected gradients by exact enumeration.

The loss term is differentiated along the sampled tokens only (no score-function term), so its
expected gradient under y ~ pi is sum_y pi(y) * grad k(log pi(y) - log ref(y)), with pi(y) held
fixed (it is the sampling distribution). Enumerating every token of a tiny softmax policy gives that
expectation exactly, which we compare with autograd's gradient of the divergence each estimator is
documented to estimate (remax_ray/algo/kl.py):
  k1 -> 0 (E_pi[grad log pi] = 0: no pull at all, which is why config refuses it in the loss),
  k2 -> grad KL(pi || ref),
  k3 -> grad KL(ref || pi).
"""

from __future__ import annotations

import pytest
import torch

from remax_ray.algo.kl import kl_loss
from remax_ray.config import ConfigError, load_config

THETA = torch.tensor([0.3, -1.2, 2.0, 0.5, -0.4], dtype=torch.float64)
REF_LOGITS = torch.tensor([1.0, 0.2, -0.5, 0.9, -1.5], dtype=torch.float64)


def expected_loss_gradient(kind: str, at: torch.Tensor = THETA) -> torch.Tensor:
    theta = at.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, -1)  # [K]: one "sequence" per token y
    ref_logp = torch.log_softmax(REF_LOGITS, -1)
    weights = logp.detach().exp()  # pi(y), fixed: the distribution the tokens were sampled from
    # kl_loss with the probabilities as mask weights and num_tokens=1 is sum_y pi(y) * k(y).
    loss = kl_loss(logp[:, None], ref_logp[:, None], weights[:, None], kind, 1.0, "token-mean", num_tokens=1.0)
    (grad,) = torch.autograd.grad(loss, theta)
    return grad


def true_kl_gradient(direction: str) -> torch.Tensor:
    theta = THETA.clone().requires_grad_(True)
    logp, ref_logp = torch.log_softmax(theta, -1), torch.log_softmax(REF_LOGITS, -1)
    if direction == "pi||ref":
        kl = (logp.exp() * (logp - ref_logp)).sum()
    else:
        kl = (ref_logp.exp() * (ref_logp - logp)).sum()
    (grad,) = torch.autograd.grad(kl, theta)
    return grad


def test_k1_in_the_loss_has_zero_expected_gradient():
    torch.testing.assert_close(expected_loss_gradient("k1"), torch.zeros_like(THETA), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind, direction", [("k2", "pi||ref"), ("k3", "ref||pi")])
def test_k2_and_k3_in_the_loss_follow_the_gradient_of_a_true_kl(kind, direction):
    expected, true = expected_loss_gradient(kind), true_kl_gradient(direction)
    assert true.norm() > 0.1  # the policy is far from the reference: a real pull is expected
    torch.testing.assert_close(expected, true, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("kind", ["k2", "k3"])
def test_a_gradient_step_on_the_loss_term_moves_the_policy_toward_the_reference(kind):
    theta = THETA.clone()
    for _ in range(200):
        theta = theta - 0.5 * expected_loss_gradient(kind, at=theta)
    ref = torch.softmax(REF_LOGITS, -1)
    before = (torch.softmax(THETA, -1) - ref).abs().sum()
    after = (torch.softmax(theta, -1) - ref).abs().sum()
    assert after < 0.01 * before


def test_config_refuses_k1_in_the_loss_and_names_the_alternatives():
    with pytest.raises(ConfigError, match=r"k1.*k2.*k3"):
        load_config(None, ["algo.kl_placement=loss", "algo.kl_estimator=k1"])
    load_config(None, ["algo.kl_placement=loss", "algo.kl_estimator=k2"])
    load_config(None, ["algo.kl_placement=loss", "algo.kl_estimator=k1", "algo.kl_coef=0"])
    load_config(None, ["algo.kl_placement=reward", "algo.kl_estimator=k1"])
