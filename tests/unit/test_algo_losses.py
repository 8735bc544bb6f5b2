"""Tests for remax_ray.algo.losses."""

from __future__ import annotations

import pytest
import torch

from remax_ray.algo.losses import (
    AGG_MODES,
    aggregate,
    masked_mean,
    masked_sum,
    policy_gradient_loss,
    ppo_clip_loss,
    value_loss,
)

VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def test_masked_sum_and_mean() -> None:
    assert masked_sum(VALUES, MASK).item() == 10.0  # 1+2+3+4
    torch.testing.assert_close(masked_sum(VALUES, MASK, dim=1), torch.tensor([6.0, 4.0]))
    assert masked_mean(VALUES, MASK).item() == 2.5  # 10 / 4
    torch.testing.assert_close(masked_mean(VALUES, MASK, dim=1), torch.tensor([2.0, 4.0]))


def test_masked_mean_all_zero_mask_is_zero_with_finite_grad() -> None:
    x = torch.ones(2, 3, requires_grad=True)
    out = masked_mean(x, torch.zeros(2, 3))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(x.grad).all()
    one_empty_row = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
    torch.testing.assert_close(masked_mean(VALUES, one_empty_row, dim=1), torch.tensor([1.0, 0.0]))


def test_aggregate_modes_by_hand() -> None:
    assert AGG_MODES == ("token-mean", "seq-mean-token-mean", "seq-sum")
    # token-mean: (1+2+3+4) / 4 tokens
    torch.testing.assert_close(aggregate(VALUES, MASK, "token-mean"), torch.tensor(2.5))
    # seq-mean-token-mean: mean(6/3, 4/1) = 3
    torch.testing.assert_close(aggregate(VALUES, MASK, "seq-mean-token-mean"), torch.tensor(3.0))
    # seq-sum: mean(6, 4) = 5
    torch.testing.assert_close(aggregate(VALUES, MASK, "seq-sum"), torch.tensor(5.0))
    # global counts replace the local ones
    torch.testing.assert_close(aggregate(VALUES, MASK, "token-mean", num_tokens=8), torch.tensor(1.25))
    torch.testing.assert_close(aggregate(VALUES, MASK, "seq-sum", num_seqs=5), torch.tensor(2.0))
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(VALUES, MASK, "mean")
    with pytest.raises(ValueError):
        aggregate(VALUES, MASK, "token-mean", num_tokens=0)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_micro_batches_sum_to_full_batch(mode: str) -> None:
    gen = torch.Generator().manual_seed(0)
    n, t = 7, 5
    values = torch.randn(n, t, generator=gen)
    lengths = torch.tensor([1, 5, 3, 2, 4, 5, 1])
    mask = (torch.arange(t)[None] < lengths[:, None]).float()
    full = aggregate(values, mask, mode)
    num_tokens, num_seqs = float(mask.sum()), float(n)
    for splits in ([3, 4], [1, 2, 4], [7]):  # uneven micro-batches on purpose
        parts = zip(values.split(splits), mask.split(splits))
        total = sum(aggregate(v, m, mode, num_tokens=num_tokens, num_seqs=num_seqs) for v, m in parts)
        torch.testing.assert_close(total, full)
    # Sanity: with local counts, averaging micro losses is NOT the full loss
    # for token-mean (the test above would be vacuous otherwise).
    if mode == "token-mean":
        local = sum(aggregate(v, m, mode) for v, m in zip(values.split([3, 4]), mask.split([3, 4]))) / 2
        assert abs(float(local - full)) > 1e-4


def test_policy_gradient_loss_value_and_grad() -> None:
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], requires_grad=True)
    adv = torch.tensor([[2.0, 2.0], [-1.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # -A*logp on tokens: 2, 4, -0.5 -> token-mean 5.5/3
    loss = policy_gradient_loss(logp, adv, mask)
    torch.testing.assert_close(loss, torch.tensor(5.5 / 3))
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv.detach() * mask / 3)
    assert adv.grad is None  # advantages are detached


def test_ppo_clip_loss_by_hand() -> None:
    # ratios e^(logp-old): 1.5, 0.5, 1.1, 1.5 (last one masked)
    ratios = torch.tensor([[1.5, 0.5], [1.1, 1.5]])
    old = torch.zeros(2, 2)
    logp = ratios.log().requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # token 0: A=+1, r=1.5 -> max(-1.5, -1.2) = -1.2 (clipped active)
    # token 1: A=+1, r=0.5 -> max(-0.5, -0.8) = -0.5 (unclipped)
    # token 2: A=-1, r=1.1 -> max(1.1, 1.1) = 1.1 (inside region, unclipped)
    # token-mean = (-1.2 - 0.5 + 1.1) / 3 = -0.2; clip fraction = 1/3
    loss, clip_frac = ppo_clip_loss(logp, old, adv, mask, clip_eps=0.2)
    torch.testing.assert_close(loss, torch.tensor(-0.2))
    torch.testing.assert_close(clip_frac, torch.tensor(1 / 3))
    loss.backward()
    # the clipped token gets no gradient; d(-A r)/dlogp = -A r / 3 elsewhere
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.5 / 3], [1.1 / 3, 0.0]]))


def test_ppo_clip_loss_on_policy_equals_pg_gradient() -> None:
    # At ratio 1 the PPO gradient equals the REINFORCE surrogate's gradient.
    logp = torch.tensor([[-1.0, -2.0, -0.3]], requires_grad=True)
    adv = torch.tensor([[0.7, -1.2, 2.0]])
    mask = torch.ones(1, 3)
    loss, frac = ppo_clip_loss(logp, logp.detach(), adv, mask)
    (g_ppo,) = torch.autograd.grad(loss, logp)
    (g_pg,) = torch.autograd.grad(policy_gradient_loss(logp, adv, mask), logp)
    torch.testing.assert_close(g_ppo, g_pg)
    assert frac.item() == 0.0


def test_value_loss_by_hand() -> None:
    values = torch.tensor([[1.0, 0.0]], requires_grad=True)
    old = torch.tensor([[0.5, 0.0]])
    returns = torch.tensor([[2.0, 1.0]])
    # token 0: v=1, v_clip = 0.5 + clip(0.5, +-0.2) = 0.7: max((1-2)^2, (0.7-2)^2) = 1.69
    # token 1: v=0, v_clip = 0: (0-1)^2 = 1
    # 0.5 * (1.69 + 1) / 2 tokens = 0.6725
    loss = value_loss(values, old, returns, torch.ones(1, 2), clip_eps=0.2)
    torch.testing.assert_close(loss, torch.tensor(0.6725))
    loss.backward()
    # token 0 uses the clipped branch (constant in v): no gradient; token 1: (v-R)/2 = -0.5
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, -0.5]]))
