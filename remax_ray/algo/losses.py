"""Masked reductions and policy / value losses.

All losses are reduced with :func:`aggregate`. When a batch is split into
micro-batches for gradient accumulation, pass the batch-global ``num_tokens``
/ ``num_seqs``: each micro-batch loss is then already divided by the global
count, so the *sum* of the micro-batch losses (and of their gradients) equals
the full-batch loss exactly, whatever the micro-batch sizes are. Dividing by
local counts and averaging instead would over-weight tokens of short
micro-batches.
"""

from __future__ import annotations

import torch
from torch import Tensor

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-sum")

# The bound on every log-ratio the algo package exponentiates (PPO's ratio, k3's ref/pi, the
# importance weights): exp() of a log-ratio above ~88 overflows float32 to inf, and inf * 0 (masked
# padding) is NaN. No sane update moves a token's log-prob by 20 nats, and exp(20) ~ 5e8 is still
# finite in float32.
MAX_LOG_RATIO = 20.0


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x * mask``.

    Args:
        x: [..] any shape; mask: same shape (0/1 or weights).
        dim: reduce over this dim, or over everything when None.

    Returns:
        [] scalar if dim is None, else x's shape without ``dim``.
    """
    prod = x * mask
    return prod.sum() if dim is None else prod.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the positions where mask is non-zero.

    Returns 0 (not NaN) where the mask sums to zero, so empty responses
    contribute nothing instead of poisoning the batch.

    Args:
        x: [..]; mask: same shape.
        dim: reduce over this dim, or over everything when None.

    Returns:
        [] scalar if dim is None, else x's shape without ``dim``.
    """
    total = masked_sum(x, mask, dim)
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    # Replace zero counts by 1 *before* dividing: torch.where after a 0/0
    # would still give NaN gradients through the unused branch.
    safe = torch.where(count != 0, count, torch.ones_like(count))
    return total / safe


def _positive(value: float, name: str) -> float:
    """A global count (python scalar) as float; ValueError unless > 0."""
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def aggregate(
    values: Tensor,
    mask: Tensor,
    mode: str,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> Tensor:
    """Reduce per-token values [N, T] to a scalar loss.

    Modes:
        token-mean: sum(values * mask) / total tokens.
        seq-mean-token-mean: mean over sequences of each sequence's token mean.
        seq-sum: mean over sequences of each sequence's token sum.

    Args:
        values: [N, T]; mask: [N, T] 0/1.
        mode: one of :data:`AGG_MODES`.
        num_tokens: global token count of the whole batch (token-mean only).
        num_seqs: global sequence count of the whole batch (seq-* modes).
            Sequences with an empty mask still count as sequences.

    Returns:
        [] scalar.
    """
    if values.shape != mask.shape:
        raise ValueError(f"values {tuple(values.shape)} and mask {tuple(mask.shape)} differ")
    if mode == "token-mean":
        if num_tokens is None:
            return masked_mean(values, mask)
        return masked_sum(values, mask) / _positive(num_tokens, "num_tokens")
    if mode == "seq-mean-token-mean":
        per_seq = masked_mean(values, mask, dim=-1)  # [N]
    elif mode == "seq-sum":
        per_seq = masked_sum(values, mask, dim=-1)  # [N]
    else:
        raise ValueError(f"unknown aggregation mode {mode!r}; valid: {', '.join(AGG_MODES)}")
    # max(.., 1): an empty micro-batch sums to 0 rather than 0/0.
    denom = max(per_seq.shape[0], 1) if num_seqs is None else _positive(num_seqs, "num_seqs")
    return per_seq.sum() / denom


def policy_gradient_loss(
    logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    agg: str = "token-mean",
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> Tensor:
    """REINFORCE / ReMax surrogate: aggregate(-A_t * log pi(y_t)).

    Its gradient is -(A_t * grad log pi(y_t)) aggregated, i.e. the negated
    policy-gradient estimate. Advantages are detached: they are constants of
    the estimator, not something to optimise.

    Args:
        logp: [N, T] log-probs of the sampled tokens (requires grad).
        advantages: [N, T]; mask: [N, T].

    Returns:
        [] scalar loss.
    """
    return aggregate(-advantages.detach() * logp, mask, agg, num_tokens, num_seqs)


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    agg: str = "token-mean",
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Clipped surrogate loss of PPO.

    Per token: max(-A * r, -A * clip(r, 1 - eps, 1 + eps)) with
    r = exp(logp - old_logp): the pessimistic of the two, so the loss gains
    nothing from pushing the ratio beyond the trust region.

    Args:
        logp: [N, T] current log-probs (requires grad).
        old_logp: [N, T] log-probs of the policy that sampled (detached).
        advantages: [N, T]; mask: [N, T].

    Returns:
        (loss [] scalar, clip_fraction [] detached: masked share of tokens
        where the clipped term was the active one).
    """
    log_ratio = (logp - old_logp.detach()).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = aggregate(torch.maximum(unclipped, clipped), mask, agg, num_tokens, num_seqs)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask).detach()
    return loss, clip_fraction


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    agg: str = "token-mean",
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> Tensor:
    """Clipped value loss: 0.5 * max((v - R)^2, (v_clipped - R)^2).

    ``v_clipped = old_v + clip(v - old_v, -eps, eps)`` keeps the critic from
    moving further than ``eps`` away from its rollout-time prediction in one
    update (mirrors the policy trust region).

    Args:
        values: [N, T] current predictions (requires grad).
        old_values: [N, T] rollout-time predictions; returns: [N, T] targets.
        mask: [N, T].

    Returns:
        [] scalar loss.
    """
    old_values = old_values.detach()
    returns = returns.detach()
    v_clipped = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    per_token = 0.5 * torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2)
    return aggregate(per_token, mask, agg, num_tokens, num_seqs)
