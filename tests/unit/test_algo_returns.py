"""Tests for the token-level returns: GAE and the KL-in-reward placement."""

from __future__ import annotations

import pytest
import torch

from remax_ray.algo.advantages import (
    clip_scores,
    gae_advantages,
    masked_moments,
    masked_whiten,
    token_returns,
    token_rewards,
)

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_token_returns_without_kl_broadcasts_score() -> None:
    out = token_returns(torch.tensor([2.0, -1.0]), MASK)
    torch.testing.assert_close(out, torch.tensor([[2.0, 2.0, 2.0], [-1.0, -1.0, 0.0]]))
    # kl given but coef 0: identical.
    out0 = token_returns(torch.tensor([2.0, -1.0]), MASK, kl=torch.ones(2, 3), kl_coef=0.0)
    torch.testing.assert_close(out0, out)


def test_token_returns_with_kl_by_hand() -> None:
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])  # 9.0 is padding, ignored
    # kl_coef 2 -> r = -2*kl; the score (clipped before, by clip_scores) added at the last token.
    # row 0: r = (-0.2, -0.4, -0.6 + 1.5 = 0.9); returns = (0.3, 0.5, 0.9)
    # row 1: score -1.5; r = (-0.8, -1.0 - 1.5 = -2.5, 0); returns = (-3.3, -2.5, 0)
    out = token_returns(clip_scores(torch.tensor([4.0, -3.0]), 1.5), MASK, kl=kl, kl_coef=2.0)
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.5, 0.9], [-3.3, -2.5, 0.0]]))


def test_clip_scores_by_hand() -> None:
    scores = torch.tensor([[5.0, 0.5, -1.0], [-7.0, 2.0, 1.0]])
    torch.testing.assert_close(clip_scores(scores, 1.0), torch.tensor([[1.0, 0.5, -1.0], [-1.0, 1.0, 1.0]]))
    assert clip_scores(scores, 0.0) is scores  # 0 = no clipping
    with pytest.raises(ValueError, match="score_clip must be >= 0"):
        clip_scores(scores, -1.0)


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


def test_gae_at_gamma_lambda_one_with_zero_values_is_the_reverse_cumsum_of_token_returns() -> None:
    """ReMax's reward-to-go (token_returns) is GAE(1, 1) with no critic, on a mask that starts
    mid-row as in the learner's shifted frame."""
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 0.0]])
    kl = torch.tensor([[5.0, 0.1, -0.2, 0.3, 5.0], [5.0, 5.0, 0.4, 0.1, 5.0]])
    score = torch.tensor([1.0, -2.0])
    rewards = token_rewards(score, mask, kl, kl_coef=0.5)
    adv, ret = gae_advantages(rewards, torch.zeros_like(mask), mask, 1.0, 1.0)
    expected = token_returns(score, mask, kl, kl_coef=0.5)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected)
    # by hand, row 0: r = (-0.05, 0.1, -0.15 + 1) -> returns (0.9, 0.95, 0.85)
    torch.testing.assert_close(expected[0], torch.tensor([0.0, 0.9, 0.95, 0.85, 0.0]))


def test_token_rewards_put_the_score_on_the_last_response_token() -> None:
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    out = token_rewards(torch.tensor([3.0]), mask, torch.tensor([[9.0, 1.0, 2.0, 9.0]]), kl_coef=0.1)
    torch.testing.assert_close(out, torch.tensor([[0.0, -0.1, -0.2 + 3.0, 0.0]]))


def test_whitening_uses_the_statistics_of_all_micro_batches_together() -> None:
    a, ma = torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    b, mb = torch.tensor([[5.0, 7.0]]), torch.tensor([[1.0, 1.0]])
    mean, std = masked_moments([(a, ma), (b, mb)])
    assert mean == 4.0 and abs(std - 5.0**0.5) < 1e-9  # values 1, 3, 5, 7
    wa = masked_whiten(a, ma, mean, std)
    torch.testing.assert_close(wa, torch.tensor([[-3.0, -1.0, 0.0]]) / 5.0**0.5)
