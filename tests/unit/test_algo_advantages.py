"""Tests for the outcome-level advantage estimators and the registry."""

from __future__ import annotations

import pytest
import torch

from remax_ray.algo.advantages import (
    ESTIMATORS,
    get_estimator,
    grpo_advantages,
    outcome_advantages,
    reinforce_advantages,
    reinforce_mean_advantages,
    remax_advantages,
    rloo_advantages,
)

SCORES = torch.tensor([[1.0, 3.0, 5.0], [0.0, 0.0, 6.0]])


def test_remax_by_hand() -> None:
    # greedy scores 2 and 1: row 0 -> (1-2, 3-2, 5-2); row 1 -> (0-1, 0-1, 6-1)
    out = remax_advantages(SCORES, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([[-1.0, 1.0, 3.0], [-1.0, -1.0, 5.0]]))


def test_remax_rejects_bad_greedy_shape() -> None:
    with pytest.raises(ValueError, match="greedy_scores"):
        remax_advantages(SCORES, torch.tensor([1.0, 2.0, 3.0]))


def test_reinforce_is_identity() -> None:
    out = reinforce_advantages(SCORES)
    torch.testing.assert_close(out, SCORES)
    assert out.data_ptr() != SCORES.data_ptr()  # a copy, safe to modify


def test_rloo_by_hand() -> None:
    # row 0: 1 - (3+5)/2 = -3; 3 - (1+5)/2 = 0; 5 - (1+3)/2 = 3
    # row 1: 0 - (0+6)/2 = -3 (twice); 6 - 0 = 6
    out = rloo_advantages(SCORES)
    torch.testing.assert_close(out, torch.tensor([[-3.0, 0.0, 3.0], [-3.0, -3.0, 6.0]]))


def test_reinforce_mean_by_hand() -> None:
    # Batch of 6 scores, sum 15: A_i = r_i - (15 - r_i) / 5.
    # row 0: 1 - 14/5 = -1.8; 3 - 12/5 = 0.6; 5 - 10/5 = 3.0
    # row 1: 0 - 15/5 = -3.0 (twice); 6 - 9/5 = 4.2
    expected = torch.tensor([[-1.8, 0.6, 3.0], [-3.0, -3.0, 4.2]])
    torch.testing.assert_close(reinforce_mean_advantages(SCORES), expected)
    # One sample per prompt is enough: the baseline pools prompts. [3, 1], sum 6:
    # 1 - 5/2 = -1.5; 2 - 4/2 = 0; 3 - 3/2 = 1.5
    torch.testing.assert_close(reinforce_mean_advantages(torch.tensor([[1.0], [2.0], [3.0]])),
                               torch.tensor([[-1.5], [0.0], [1.5]]))
    # A common offset is removed entirely; a per-prompt one is not (unlike RLOO's).
    torch.testing.assert_close(reinforce_mean_advantages(SCORES + 100.0), expected)


def test_reinforce_mean_shard_uses_the_whole_batch() -> None:
    # Row 0 as one learner rank's share of the batch above: the whole batch's sum 15 and count 6
    # give it exactly the advantages it has in the whole batch.
    share = reinforce_mean_advantages(SCORES[:1], batch_sum=15.0, batch_count=6)
    torch.testing.assert_close(share, torch.tensor([[-1.8, 0.6, 3.0]]))
    torch.testing.assert_close(outcome_advantages("reinforce_mean", SCORES[:1], batch=(15.0, 6)), share)
    # Without the totals the share is its own batch: 1 - 8/2 = -3; 3 - 6/2 = 0; 5 - 4/2 = 3
    torch.testing.assert_close(reinforce_mean_advantages(SCORES[:1]), torch.tensor([[-3.0, 0.0, 3.0]]))
    with pytest.raises(ValueError, match="at least 2 sampled responses"):
        reinforce_mean_advantages(torch.ones(1, 1))
    with pytest.raises(ValueError, match="both"):
        reinforce_mean_advantages(SCORES, batch_sum=1.0)


def test_grpo_by_hand() -> None:
    # row 0: mean 3, population std sqrt((4+0+4)/3) = sqrt(8/3)
    # row 1: mean 2, population std sqrt((4+4+16)/3) = sqrt(8)
    s0, s1 = (8.0 / 3.0) ** 0.5, 8.0**0.5
    expected = torch.tensor([[-2 / s0, 0.0, 2 / s0], [-2 / s1, -2 / s1, 4 / s1]])
    torch.testing.assert_close(grpo_advantages(SCORES, eps=0.0), expected)
    # Equal scores: zero advantage, not NaN (eps > 0 guards the 0/0).
    torch.testing.assert_close(grpo_advantages(torch.full((1, 4), 7.0)), torch.zeros(1, 4))


@pytest.mark.parametrize("fn", [rloo_advantages, grpo_advantages])
def test_group_estimators_need_two_samples(fn) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fn(torch.ones(3, 1))


def test_registry_flags() -> None:
    assert set(ESTIMATORS) == {"remax", "reinforce", "reinforce_mean", "rloo", "grpo", "ppo"}
    assert [k for k, s in ESTIMATORS.items() if s.batch_baseline] == ["reinforce_mean"]
    assert get_estimator("reinforce_mean").min_samples == 1
    assert get_estimator("remax").needs_greedy and get_estimator("remax").min_samples == 1
    assert not get_estimator("reinforce").needs_greedy and get_estimator("reinforce").min_samples == 1
    assert get_estimator("rloo").min_samples == 2 and get_estimator("grpo").min_samples == 2
    ppo = get_estimator("ppo")
    assert ppo.needs_critic and ppo.uses_ratio and ppo.min_samples == 1 and not ppo.needs_greedy
    # Only ReMax pays for a greedy response; only PPO for a critic and an old-log-prob pass.
    assert [k for k, s in ESTIMATORS.items() if s.needs_greedy] == ["remax"]
    assert not any(ESTIMATORS[k].needs_critic or ESTIMATORS[k].uses_ratio
                   for k in ("remax", "reinforce", "reinforce_mean", "rloo", "grpo"))
    with pytest.raises(ValueError, match="remax.*reinforce.*reinforce_mean.*rloo.*grpo.*ppo"):
        get_estimator("gae")


def test_outcome_advantages_dispatch() -> None:
    greedy = torch.tensor([2.0, 1.0])
    torch.testing.assert_close(outcome_advantages("remax", SCORES, greedy), remax_advantages(SCORES, greedy))
    torch.testing.assert_close(outcome_advantages("rloo", SCORES), rloo_advantages(SCORES))
    torch.testing.assert_close(outcome_advantages("grpo", SCORES, greedy), grpo_advantages(SCORES))
    torch.testing.assert_close(outcome_advantages("reinforce", SCORES), SCORES)
    with pytest.raises(ValueError, match="greedy"):
        outcome_advantages("remax", SCORES, None)
    with pytest.raises(ValueError, match="token-level"):
        outcome_advantages("ppo", SCORES)
    with pytest.raises(ValueError, match="valid"):
        outcome_advantages("nope", SCORES)
