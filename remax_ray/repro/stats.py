"""Seed statistics behind the reproduction's verdicts: t-intervals, paired differences, the seeds a
difference would need, and the verdict rules. Pure functions of floats.

Student's t is computed here (scipy is not in the lock): the closed forms of its CDF for an integer
number of degrees of freedom (Abramowitz & Stegun 26.7.3-4), inverted by bisection. Seeds give
integer degrees of freedom (n - 1), so nothing else is needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

NAN = float("nan")
CONFIDENCE = 0.95
MAX_SEEDS = 1000
"""seeds_needed stops counting here: a difference that needs more is out of reach of any repro."""

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` >= 1 (an integer) degrees of freedom."""
    if df < 1 or int(df) != df:
        raise ValueError(f"t_cdf: df must be an integer >= 1, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    # A = P(|T| <= |t|) as a finite series in cos^2(theta); even and odd df differ.
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        a = s * total
    else:
        series = 0.0
        if df > 1:
            term = series = 1.0
            for k in range(1, (df - 1) // 2):
                term *= c2 * (2 * k) / (2 * k + 1)
                series += term
        a = 2 / math.pi * (theta + s * math.cos(theta) * series)
    a = min(max(a, 0.0), 1.0)
    return 0.5 + a / 2 if t >= 0 else 0.5 - a / 2


def t_quantile(p: float, df: int) -> float:
    """The t with P(T <= t) = p, for 0 < p < 1 (bisection to float precision)."""
    if not 0 < p < 1:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def z_quantile(p: float) -> float:
    """The standard normal's p-quantile (bisection on erf)."""
    if not 0 < p < 1:
        raise ValueError(f"z_quantile: p must be in (0, 1), got {p}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its two-sided t-interval; lo/hi are NaN below two values."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def finite(xs: Iterable[float | None]) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(x)]


def mean_interval(xs: Iterable[float | None], confidence: float = CONFIDENCE) -> Interval:
    """Mean, sample sd (n - 1) and the t-interval mean ± t_{(1+c)/2, n-1} · sd / sqrt(n)."""
    vals = finite(xs)
    n = len(vals)
    if n == 0:
        return Interval(0, NAN, NAN, NAN, NAN)
    mean = sum(vals) / n
    if n < 2:
        return Interval(1, mean, NAN, NAN, NAN)
    sd = math.sqrt(sum((x - mean) ** 2 for x in vals) / (n - 1))
    half = t_quantile((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


def paired_differences(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """a[seed] - b[seed] for the seeds both have a finite value for: the same seed gives both arms
    the same prompts, held-out set and initial policy, so pairing removes that shared noise."""
    return {s: a[s] - b[s] for s in sorted(a) if s in b and finite([a[s], b[s]]) == [a[s], b[s]]}


def seeds_needed(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Seeds (pairs) a two-sided paired t-test at level ``alpha`` needs to detect a mean difference
    of ``effect`` with probability ``power``, were the differences' sd ``sd``: the smallest n >= 2 with
    n >= ((t_{1-alpha/2, n-1} + t_{power, n-1}) · sd / effect)^2, the usual t-approximation of the
    noncentral-t power. None when sd is unknown; MAX_SEEDS + 1 when more than MAX_SEEDS."""
    if sd is None or not math.isfinite(sd) or effect <= 0:
        return None
    if sd == 0:
        return 2
    # The normal quantiles give a lower bound (t's are larger); count up from there.
    n = max(2, math.ceil(((z_quantile(1 - alpha / 2) + z_quantile(power)) * sd / effect) ** 2))
    while n <= MAX_SEEDS:
        df = n - 1
        if n >= ((t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * sd / effect) ** 2:
            return n
        n += 1
    return MAX_SEEDS + 1


def _too_few(iv: Interval) -> str | None:
    return f"{INCONCLUSIVE} (n<2)" if iv.n < 2 or not math.isfinite(iv.lo) else None


def noninferiority(diff: Interval, margin: float) -> str:
    """Claim "A >= B" as non-inferiority of A - B with margin ``margin`` > 0: supported when the whole
    interval lies above -margin, contradicted when it lies below, inconclusive when it straddles."""
    if (few := _too_few(diff)) is not None:
        return few
    if diff.lo > -margin:
        return SUPPORTED
    return CONTRADICTED if diff.hi < -margin else INCONCLUSIVE


def superiority(diff: Interval) -> str:
    """Claim "A > B": supported when the interval of A - B lies above 0, contradicted when it lies
    below 0 (B is then shown better), inconclusive when it contains 0."""
    if (few := _too_few(diff)) is not None:
        return few
    if diff.lo > 0:
        return SUPPORTED
    return CONTRADICTED if diff.hi < 0 else INCONCLUSIVE
