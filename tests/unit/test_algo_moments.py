"""Mergeable moments (count, mean, M2): hand-computed values, merging, and the cancellation that a
one-pass E[x^2] - mean^2 suffers when the mean is large against the spread."""

from __future__ import annotations

import types

import pytest
import torch

from remax_ray.algo import Moments, masked_moments, masked_moments_of, merge_all
from remax_ray.learner.learner import Learner


def test_moments_of_hand_values_and_their_merge() -> None:
    a = Moments.of(torch.tensor([1.0, 3.0, 100.0]), torch.tensor([1.0, 1.0, 0.0]))
    assert (a.count, a.mean, a.m2) == (2.0, 2.0, 2.0)
    b = Moments.of(torch.tensor([5.0, 7.0]))
    both = a.merge(b)  # values 1, 3, 5, 7: mean 4, sum of squared deviations 9 + 1 + 1 + 9 = 20
    assert (both.count, both.mean, both.m2) == (4.0, 4.0, 20.0)
    assert both.var == 5.0 and both.std == pytest.approx(5.0**0.5)
    assert Moments().merge(b) == b == b.merge(Moments())
    assert masked_moments([]) == (0.0, 1.0)  # no value on any mask


def test_merging_in_any_split_equals_the_moments_of_the_whole() -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(97, generator=g, dtype=torch.float64) * 3 + 2
    whole = Moments.of(values)
    for cuts in ([10, 50, 90], [1], [96], list(range(1, 97, 7))):
        parts = [Moments.of(p) for p in torch.tensor_split(values, cuts)]
        merged = merge_all(parts)
        assert merged.count == whole.count
        assert merged.mean == pytest.approx(whole.mean, rel=1e-14)
        assert merged.m2 == pytest.approx(whole.m2, rel=1e-12)


def test_a_large_mean_does_not_cancel_the_spread() -> None:
    """Returns near 1e4 with a spread of 1e-2, in float32 micro-batches as the learner holds them.
    Sums of x and x^2 in float32 lose the spread entirely (x^2 ~ 1e8 has a float32 step of 8)."""
    spread = torch.tensor([[-1.0, 0.0, 1.0, 0.5]]) * 1e-2
    pairs = [((1e4 + spread * (k + 1)).float(), torch.ones(1, 4)) for k in range(3)]
    exact = torch.cat([v.double().reshape(-1) for v, _ in pairs])
    want_mean, want_std = exact.mean().item(), exact.std(unbiased=False).item()
    for mean, std in (masked_moments(pairs),
                      Learner._global_moments(types.SimpleNamespace(device=torch.device("cpu")), pairs)):
        assert mean == pytest.approx(want_mean, rel=1e-12)
        assert std == pytest.approx(want_std, rel=1e-6)
    assert masked_moments_of(pairs).count == 12
