"""Tests for the token-level returns: GAE and the KL-in-reward placement."""

from __future__ import annotations

import torch

from remax_ray.algo.advantages import gae_advantages, token_returns

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_token_returns_without_kl_broadcasts_score() -> None:
    out = token_returns(torch.tensor([2.0, -1.0]), MASK)
    torch.testing.assert_close(out, torch.tensor([[2.0, 2.0, 2.0], [-1.0, -1.0, 0.0]]))
    # kl given but coef 0: identical.
    out0 = token_returns(torch.tensor([2.0, -1.0]), MASK, kl=torch.ones(2, 3), kl_coef=0.0)
    torch.testing.assert_close(out0, out)


def test_token_returns_with_kl_and_clip_by_hand() -> None:
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])  # 9.0 is padding, ignored
    # kl_coef 2 -> r = -2*kl; score clipped to [-1.5, 1.5] added at the last token.
    # row 0: r = (-0.2, -0.4, -0.6 + 1.5 = 0.9); returns = (0.3, 0.5, 0.9)
    # row 1: score -3 -> -1.5; r = (-0.8, -1.0 - 1.5 = -2.5, 0); returns = (-3.3, -2.5, 0)
    out = token_returns(torch.tensor([4.0, -3.0]), MASK, kl=kl, kl_coef=2.0, score_clip=1.5)
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.5, 0.9], [-3.3, -2.5, 0.0]]))


def test_token_returns_empty_row() -> None:
    out = token_returns(torch.tensor([5.0]), torch.zeros(1, 3))
    torch.testing.assert_close(out, torch.zeros(1, 3))


def test_gae_by_hand() -> None:
    gamma, lam = 0.5, 0.5
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 7.0]])  # 7.0 is padding
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 3.0]])  # 3.0 is padding
    # row 0: deltas d2 = 1 - 0.5 = 0.5; d1 = 0 + 0.5*0.5 - 0.5 = -0.25; d0 = -0.25
    #   A2 = 0.5; A1 = -0.25 + 0.25*0.5 = -0.125; A0 = -0.25 + 0.25*(-0.125) = -0.28125
    # row 1: value past the end counts as 0: d1 = 2 + 0 - 1 = 1; d0 = 0 + 0.5*1 - 1 = -0.5
    #   A1 = 1; A0 = -0.5 + 0.25*1 = -0.25; A2 = 0 (masked)
    adv, ret = gae_advantages(rewards, values, MASK, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor([[-0.28125, -0.125, 0.5], [-0.25, 1.0, 0.0]]))
    # returns = A + V on the response, 0 elsewhere
    torch.testing.assert_close(ret, torch.tensor([[0.21875, 0.375, 1.0], [0.75, 2.0, 0.0]]))


def test_gae_lambda_one_gamma_one_is_return_minus_value() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, -1.0, 2.0]])
    adv, ret = gae_advantages(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    # Monte Carlo returns (6, 5, 3) minus values
    torch.testing.assert_close(ret, torch.tensor([[6.0, 5.0, 3.0]]))
    torch.testing.assert_close(adv, torch.tensor([[5.5, 6.0, 1.0]]))
