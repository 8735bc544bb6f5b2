"""remax_ray.repro.stats against hand-computed and tabulated values."""

from __future__ import annotations

import math

import pytest

from remax_ray.repro.stats import (
    Interval,
    mean_interval,
    noninferiority,
    paired_differences,
    seeds_needed,
    superiority,
    t_cdf,
    t_quantile,
    z_quantile,
)


@pytest.mark.parametrize("p, df, expected", [
    # Student's t tables (two-sided 95% and one-sided 80% points).
    (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 4, 2.776), (0.975, 9, 2.262),
    (0.975, 30, 2.042), (0.8, 2, 1.061), (0.8, 3, 0.978), (0.8, 4, 0.941), (0.8, 9, 0.883),
])
def test_t_quantile_matches_the_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=6e-4)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=6e-4)


def test_t_cdf_closed_forms():
    # df = 1 is Cauchy: 1/2 + atan(t)/pi; df = 2: 1/2 + t / (2 sqrt(2 + t^2)).
    assert t_cdf(1.0, 1) == pytest.approx(0.75)
    assert t_cdf(1.0, 2) == pytest.approx(0.5 + 1 / (2 * math.sqrt(3)))
    assert t_cdf(0.0, 7) == 0.5 and t_cdf(-2.0, 5) == pytest.approx(1 - t_cdf(2.0, 5))
    # Large df tends to the normal.
    assert t_quantile(0.975, 999) == pytest.approx(z_quantile(0.975), abs=3e-3)
    assert z_quantile(0.975) == pytest.approx(1.95996, abs=1e-5)
    with pytest.raises(ValueError, match="df"):
        t_cdf(1.0, 1.5)


def test_interval_by_hand():
    # diffs 0.1, 0.3, 0.2: mean 0.2, sd 0.1, t_{0.975,2} = 4.303 -> ±4.303 * 0.1 / sqrt(3) = ±0.2484
    iv = mean_interval([0.1, 0.3, 0.2])
    assert iv.n == 3 and iv.mean == pytest.approx(0.2) and iv.sd == pytest.approx(0.1)
    assert iv.half_width == pytest.approx(0.2484, abs=1e-4)
    assert (iv.lo, iv.hi) == (pytest.approx(-0.0484, abs=1e-4), pytest.approx(0.4484, abs=1e-4))
    one = mean_interval([0.5, float("nan"), None])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.lo)
    assert mean_interval([]).n == 0


def test_paired_differences_keep_common_finite_seeds():
    a = {0: 1.0, 1: 2.0, 2: 3.0, 3: float("nan")}
    b = {0: 0.5, 2: 2.0, 3: 1.0, 4: 9.0}
    assert paired_differences(a, b) == {0: 0.5, 2: 1.0}


def test_seeds_needed_by_hand():
    # sd 0.1, effect 0.2: n = 4 gives ((3.182 + 0.978) * 0.5)^2 = 4.33 > 4; n = 5: (2.776 + 0.941)^2 / 4 = 3.45 <= 5.
    assert seeds_needed(0.1, 0.2) == 5
    assert seeds_needed(0.2, 0.2) == 10  # (2.262 + 0.883)^2 = 9.89 <= 10; n = 9: (2.306 + 0.889)^2 = 10.2 > 9
    assert seeds_needed(0.0, 0.2) == 2
    assert seeds_needed(float("nan"), 0.2) is None
    assert seeds_needed(10.0, 0.2) == 1001  # beyond MAX_SEEDS


def iv(lo, hi, n=5):
    return Interval(n, (lo + hi) / 2, 0.1, lo, hi)


def test_noninferiority_verdicts():
    assert noninferiority(iv(-0.15, 0.3), 0.2) == "supported"
    assert noninferiority(iv(-0.5, -0.25), 0.2) == "contradicted"
    assert noninferiority(iv(-0.3, 0.1), 0.2) == "inconclusive"
    assert noninferiority(mean_interval([0.4]), 0.2) == "inconclusive (n<2)"


def test_superiority_verdicts():
    assert superiority(iv(0.01, 0.3)) == "supported"
    assert superiority(iv(-0.3, -0.01)) == "contradicted"
    assert superiority(iv(-0.1, 0.2)) == "inconclusive"
    assert superiority(mean_interval([])) == "inconclusive (n<2)"
