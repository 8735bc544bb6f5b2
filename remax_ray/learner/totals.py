"""What one update accumulates for its metrics, typed, and made global across learner ranks.

Each micro-batch adds to one :class:`UpdateTotals`; at the end of the update ``across_ranks`` sums
the sums, takes the max of the maxima and merges the moments (one all-reduce and one small
all-gather), so K ranks report one learner's numbers. A field added here is summed unless it is
listed in ``_MAXED`` or is a :class:`~remax_ray.algo.Moments`: no list of names to keep in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from remax_ray.algo import Moments
from remax_ray.learner import dist


@dataclass
class UpdateTotals:
    loss: float = 0.0
    """Sum over optimizer steps of each step's loss (the metric is their mean)."""
    value_loss: float = 0.0
    clip_frac: float = 0.0
    """PPO: sum over optimizer steps of the share of the step's tokens whose ratio was clipped."""
    kl: float = 0.0
    entropy: float = 0.0
    logp_diff: float = 0.0
    """Sum over response tokens of |learner log-prob - generator log-prob| (first epoch only)."""
    logp_diff_tokens: float = 0.0
    is_tokens: float = 0.0
    """rollout.overlap: tokens with an importance weight, and the sums of their ratios and clips."""
    is_ratio: float = 0.0
    is_clip: float = 0.0
    is_ratio_max: float = 0.0
    loss_weights: Moments = field(default_factory=Moments)
    """Moments of the per-token weights the loss multiplies each log-prob (PPO: each ratio) by."""

    def note_loss_weights(self, weights: Tensor, mask: Tensor) -> None:
        """A micro-batch's loss weights on its mask. An epoch that sees the batch again adds it
        again, which leaves the mean and the std unchanged."""
        self.loss_weights = self.loss_weights.merge(Moments.of(weights, mask))

    def note_importance(self, tokens: float, stats: dict[str, float]) -> None:
        """One micro-batch's importance-ratio statistics (``algo.offpolicy``) over ``tokens`` tokens."""
        self.is_tokens += tokens
        self.is_ratio += stats["is_ratio_mean"] * tokens
        self.is_clip += stats["is_clip_frac"] * tokens
        self.is_ratio_max = max(self.is_ratio_max, stats["is_ratio_max"])

    def across_ranks(self, device: torch.device) -> UpdateTotals:
        summed = [f.name for f in fields(self) if f.name not in _MAXED and not isinstance(getattr(self, f.name), Moments)]
        out = dist.sum_floats({name: getattr(self, name) for name in summed}, device)
        out |= {name: dist.max_float(getattr(self, name), device) for name in _MAXED}
        return replace(self, **out, loss_weights=dist.all_moments(self.loss_weights, device))

    def loss_weight_metrics(self) -> dict[str, float]:
        """``adv_mean`` / ``adv_std``: mean and population std of the loss weights ({} when none)."""
        w = self.loss_weights
        return {"adv_mean": w.mean, "adv_std": w.std} if w.count else {}

    def importance_metrics(self) -> dict[str, float]:
        if not self.is_tokens:
            return {}
        return {"is_ratio_mean": self.is_ratio / self.is_tokens, "is_clip_frac": self.is_clip / self.is_tokens,
                "is_ratio_max": self.is_ratio_max}


_MAXED = ("is_ratio_max",)
