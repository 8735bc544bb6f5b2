"""Correcting for stale samples: truncated per-token importance weights (one-step-off overlap).

With ``rollout.overlap`` the generators sample step t+1 while the learner trains on step t, so a
batch comes from the policy one update behind the learner's (the behaviour policy mu). The policy
gradient of the learner's policy pi is E_mu[(pi/mu) * A * grad log pi]. Per-token ratios
pi(y_t | s_t) / mu(y_t | s_t), as PPO and verl's truncated importance sampling use, avoid the
exploding variance of the whole-sequence product; truncating them at ``cap`` (Ionides 2008; IMPALA's
rho-bar) bounds the variance at the price of a small bias towards the behaviour policy, which
vanishes as pi -> mu. The weights are constants of the estimator (detached), like the advantages.

ReMax's baseline, the greedy response's reward, was also produced by mu. It needs no correction: a
baseline only has to be independent of the sampled response, which it still is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from remax_ray.algo.losses import MAX_LOG_RATIO


def truncated_importance_weights(logp: Tensor, behaviour_logp: Tensor, mask: Tensor,
                                 cap: float) -> tuple[Tensor, dict[str, float]]:
    """min(pi/mu, cap) per token (0 at padding), and diagnostics.

    Args:
        logp: [N, T] the learner's log-probs of the sampled tokens (any grad is ignored).
        behaviour_logp: [N, T] the generator's log-probs of the same tokens.
        mask: [N, T] response positions.
        cap: the truncation level (> 0).

    Returns:
        weights [N, T] (detached) and {"is_ratio_mean", "is_clip_frac", "is_ratio_max"} over the mask.
    """
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    # Clamped above only: the cap makes any ratio above it moot, and exp() of a large one overflows.
    log_ratio = (logp.detach() - behaviour_logp).clamp(max=MAX_LOG_RATIO) * mask
    ratio = torch.exp(log_ratio)
    weights = ratio.clamp(max=cap) * mask
    n = mask.sum().clamp(min=1)
    stats = {"is_ratio_mean": float((ratio * mask).sum() / n),
             "is_clip_frac": float(((ratio > cap).float() * mask).sum() / n),
             "is_ratio_max": float((ratio * mask).max()) if mask.any() else 1.0}
    return weights, stats
