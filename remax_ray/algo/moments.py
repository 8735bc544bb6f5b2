"""Mergeable moments: (count, mean, M2) of a set of values, combined exactly across parts.

Why not sums of x and x^2: E[x^2] - mean^2 cancels catastrophically when the mean is large against
the spread (PPO's returns near a constant reward, values of a critic that learned the mean), and in
float32 the variance can even come out negative. Each part here is reduced in float64 with two
passes (mean, then squared deviations), and parts merge by Chan et al.'s pairwise update, which is
exact in exact arithmetic and stable in floating point. The same merge joins micro-batches on one
learner and shares across K ranks (``learner.dist.all_moments``), so K ranks see one learner's numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Moments:
    """``count`` values with mean ``mean`` and sum of squared deviations ``m2``."""

    count: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: Tensor, mask: Tensor | None = None) -> Moments:
        """The moments of ``values`` where ``mask`` is 1 (all of them without a mask)."""
        v = values.detach().double()
        m = torch.ones_like(v) if mask is None else mask.detach().to(v.device).double()
        count = float(m.sum())
        if count == 0:
            return cls()
        mean = float((v * m).sum()) / count
        return cls(count, mean, float((((v - mean) ** 2) * m).sum()))

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        return Moments(count, mean, self.m2 + other.m2 + delta * delta * self.count * other.count / count)

    @property
    def var(self) -> float:
        """Population variance (0 for no values)."""
        return self.m2 / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))


def merge_all(parts: Iterable[Moments]) -> Moments:
    out = Moments()
    for part in parts:
        out = out.merge(part)
    return out


def masked_moments_of(pairs: Iterable[tuple[Tensor, Tensor]]) -> Moments:
    """The moments of the masked entries of several (values, mask) pairs together."""
    return merge_all(Moments.of(v, m) for v, m in pairs)
