"""The variance measurement's pure statistics (remax_ray/repro/variance_stats.py), on hand-computed
examples, and the count-sketch it stores gradients in (remax_ray/repro/variance_sketch.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from remax_ray.repro.variance_sketch import CountSketch
from remax_ray.repro.variance_stats import (
    MEASURED_ESTIMATORS,
    bootstrap_counts,
    bootstrap_reward_stats,
    draw_variance,
    estimator_weights,
    leave_one_out_mean,
    prompt_offset,
    reward_stats,
    shifted_weights,
    variance_table,
)

# 2 prompts x 3 draws. mu = (2, 6); v = (1, 4) (n - 1 = 2 dof); n = 3.
SAMPLED = torch.tensor([[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]])
GREEDY = torch.tensor([4.0, 3.0])


def test_reward_stats_by_hand():
    s = reward_stats(SAMPLED, GREEDY)
    assert s["mean_reward"] == pytest.approx(4.0)
    assert s["mean_greedy_reward"] == pytest.approx(3.5)
    assert s["within"] == pytest.approx(2.5)  # (1 + 4) / 2
    # Var_x mu_hat = ((2-4)^2 + (6-4)^2) / 1 = 8, less the noise of mu_hat: within / n = 2.5 / 3.
    assert s["between"] == pytest.approx(8 - 2.5 / 3)
    assert s["batch_mean_gap2"] == s["between"]
    # ((4-2)^2 - 1/3 + (3-6)^2 - 4/3) / 2
    assert s["greedy_gap2"] == pytest.approx((4 - 1 / 3 + 9 - 4 / 3) / 2)
    # (2^2 - 1/3 + 6^2 - 4/3) / 2
    assert s["mean_sq"] == pytest.approx((4 - 1 / 3 + 36 - 4 / 3) / 2)
    assert s["condition"] == pytest.approx(s["greedy_gap2"] - s["mean_sq"])
    assert s["corr_greedy_mean"] == pytest.approx(-1.0)  # two prompts: greedy goes down as mu goes up


def test_reward_stats_are_unbiased_for_the_population_values():
    """Many prompts, few draws: the corrected statistics hit the values of the generating model."""
    g = torch.Generator().manual_seed(0)
    p, n = 20000, 3
    mu = 1.0 + 2.0 * torch.randn(p, generator=g, dtype=torch.float64)  # Var_x mu = 4, E mu^2 = 5
    greedy = mu + 0.5 * torch.randn(p, generator=g, dtype=torch.float64)  # E (r_g - mu)^2 = 0.25
    sampled = mu.unsqueeze(1) + 1.5 * torch.randn(p, n, generator=g, dtype=torch.float64)  # v = 2.25
    s = reward_stats(sampled, greedy)
    assert s["within"] == pytest.approx(2.25, rel=0.03)
    assert s["between"] == pytest.approx(4.0, rel=0.04)
    assert s["greedy_gap2"] == pytest.approx(0.25, abs=0.03)
    assert s["mean_sq"] == pytest.approx(5.0, rel=0.04)
    assert s["condition"] < 0


def test_reward_bootstrap_brackets_the_point_estimate_and_is_seeded():
    g = torch.Generator().manual_seed(1)
    sampled = torch.randn(16, 8, generator=g) + torch.randn(16, 1, generator=g)
    greedy = torch.randn(16, generator=g)
    point = reward_stats(sampled, greedy)
    ci = bootstrap_reward_stats(sampled, greedy, resamples=500, seed=3)
    assert set(ci) == set(point)
    for k in ("mean_reward", "within", "between", "mean_sq", "greedy_gap2"):
        lo, hi = ci[k]
        assert lo < point[k] < hi, (k, lo, point[k], hi)
    assert ci == bootstrap_reward_stats(sampled, greedy, resamples=500, seed=3)


def test_leave_one_out_mean():
    assert leave_one_out_mean(torch.tensor([1.0, 2.0, 6.0])).tolist() == [4.0, 3.5, 1.5]
    with pytest.raises(ValueError):
        leave_one_out_mean(torch.tensor([1.0]))


def test_estimator_weights_by_hand():
    sampled = torch.tensor([[1.0, 3.0], [2.0, 0.0], [6.0, 5.0]])  # P = 3
    greedy = torch.tensor([0.5, 2.0, 4.0])
    # The stored variance reports measured exactly these four, in this order.
    assert MEASURED_ESTIMATORS == ("remax", "reinforce", "reinforce_mean", "rloo")
    w = {name: estimator_weights(name, sampled, greedy) for name in MEASURED_ESTIMATORS}
    assert torch.allclose(w["remax"], torch.tensor([[0.5, 0], [0, 0], [2, 0]]) / 3)
    assert torch.allclose(w["reinforce"], torch.tensor([[1.0, 0], [2, 0], [6, 0]]) / 3)
    # Each first sample minus the mean of the other prompts' first samples: 4, 3.5, 1.5.
    assert torch.allclose(w["reinforce_mean"], torch.tensor([[-3.0, 0], [-1.5, 0], [4.5, 0]]) / 3)
    # A_0 = r0 - r1, A_1 = r1 - r0, averaged over the two samples and the three prompts.
    assert torch.allclose(w["rloo"], torch.tensor([[-2.0, 2.0], [2.0, -2.0], [1.0, -1.0]]) / 6)
    for name in ("ppo", "grpo"):  # a critic's values; GRPO's division by the group's std
        with pytest.raises(ValueError, match=f"'{name}' is not measured"):
            estimator_weights(name, sampled, greedy)
    with pytest.raises(ValueError, match="'gae' is unknown"):
        estimator_weights("gae", sampled, greedy)


def test_a_per_prompt_offset_cancels_exactly_for_remax_and_rloo():
    g = torch.Generator().manual_seed(0)
    sampled, greedy = torch.rand(8, 2, generator=g), torch.rand(8, generator=g)
    z = torch.tensor([prompt_offset(f"prompt {i}") for i in range(8)], dtype=sampled.dtype)
    for sigma in (1.0, 3.0, 1e6):
        for name in ("remax", "rloo"):
            assert torch.equal(shifted_weights(name, sampled, greedy, z, sigma),
                               estimator_weights(name, sampled, greedy))
        # REINFORCE carries the whole offset, the batch mean only its part that differs by prompt.
        assert torch.allclose(shifted_weights("reinforce", sampled, greedy, z, sigma)[:, 0],
                              (sampled[:, 0] + sigma * z) / 8)
        assert torch.allclose(shifted_weights("reinforce_mean", sampled, greedy, z, sigma),
                              estimator_weights("reinforce_mean", sampled + sigma * z.unsqueeze(1), greedy))
    # A common shift (the same for every prompt) is removed by the batch mean too.
    same = torch.full((8,), 0.7)
    assert torch.allclose(shifted_weights("reinforce_mean", sampled, greedy, same, 5.0),
                          estimator_weights("reinforce_mean", sampled, greedy), atol=1e-6)


def test_prompt_offset_is_deterministic_across_processes_and_roughly_standard_normal():
    code = "from remax_ray.repro.variance_stats import prompt_offset; print(repr(prompt_offset('a movie')))"
    # Python's own hash() is salted per process (PYTHONHASHSEED); the offset must not be.
    other = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": str(s)}).stdout.strip() for s in (1, 2)]
    assert other[0] == other[1] == repr(prompt_offset("a movie"))
    z = torch.tensor([prompt_offset(f"review number {i}") for i in range(4000)])
    assert abs(float(z.mean())) < 0.06 and abs(float(z.std()) - 1) < 0.05
    assert len({round(float(x), 12) for x in z}) == len(z)


def test_draw_variance_and_its_bootstrap():
    grads = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0]])  # mean (2, 1)
    # ||(-1,-1)||^2 + ||(1,-1)||^2 + ||(0,2)||^2 = 2 + 2 + 4 = 8, over D - 1 = 2.
    assert draw_variance(grads) == pytest.approx(4.0)
    counts = bootstrap_counts(3, 50, seed=0)
    assert counts.shape == (50, 3) and torch.all(counts.sum(1) == 3)
    table = variance_table({"remax": grads, "reinforce": 2 * grads}, resamples=400, seed=0)
    assert table["remax"]["variance"] == pytest.approx(4.0)
    assert table["reinforce"]["ratio_to_remax"] == pytest.approx(4.0)
    # Paired resamples: the ratio of every resample is exactly 4, so is its interval.
    assert table["reinforce"]["ratio_ci"] == pytest.approx([4.0, 4.0])
    lo, hi = table["remax"]["ci"]
    assert 0 <= lo <= 4.0 <= hi
    # ||E g||^2, unbiased: ||g_bar||^2 - variance / D = 5 - 4 / 3.
    assert table["remax"]["mean_norm2"] == pytest.approx(5 - 4 / 3)


def test_the_sketch_preserves_inner_products_in_expectation():
    g = torch.Generator().manual_seed(0)
    sizes = [30, 7, 13]
    a, b = torch.randn(50, generator=g), torch.randn(50, generator=g)
    inner, sq = [], []
    for seed in range(3000):
        s = CountSketch(sizes, k=8, seed=seed)
        sa = s(list(a.split(sizes)))
        sb = s.flat(b)
        inner.append(float(sa @ sb))
        sq.append(float(sa @ sa))
    inner_t, sq_t = torch.tensor(inner), torch.tensor(sq)
    # Means over 3000 independent sketches, within ~4 standard errors of the exact values.
    assert abs(float(inner_t.mean()) - float(a @ b)) < 4 * float(inner_t.std()) / math.sqrt(3000)
    assert abs(float(sq_t.mean()) - float(a @ a)) < 4 * float(sq_t.std()) / math.sqrt(3000)
    # k = 8 buckets for 50 coordinates is a coarse sketch: single sketches do scatter.
    assert float(sq_t.std()) > 0.1 * float(a @ a)


def test_the_sketched_variance_matches_the_exact_one():
    """D draws of P per-sample gradients in n = 20000 coordinates; every estimator's weights; the
    variance from k = 4096 sketches is within a few sqrt(2 / k) ~ 2 % of the exact variance."""
    g = torch.Generator().manual_seed(0)
    d, p, n = 12, 6, 20000
    h = torch.randn(d, p, 2, n, generator=g, dtype=torch.float64) + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    sampled = 2.0 + torch.rand(d, p, 2, generator=g, dtype=torch.float64)
    greedy = 2.0 + torch.rand(p, generator=g, dtype=torch.float64)
    sketch = CountSketch([n], k=4096, seed=1)
    sk = torch.stack([torch.stack([torch.stack([sketch.flat(h[i, x, j]) for j in range(2)]) for x in range(p)])
                      for i in range(d)]).double()  # [D, P, 2, k]
    for name in MEASURED_ESTIMATORS:
        w = torch.stack([estimator_weights(name, sampled[i], greedy) for i in range(d)])  # [D, P, 2]
        exact = draw_variance(torch.einsum("dpj,dpjn->dn", w, h))
        sketched = draw_variance(torch.einsum("dpj,dpjk->dk", w, sk))
        assert sketched == pytest.approx(exact, rel=0.06), name


def test_the_sketch_checks_its_input():
    s = CountSketch([3, 2], k=4)
    with pytest.raises(ValueError):
        s([torch.zeros(3)])
    with pytest.raises(ValueError):
        s.flat(torch.zeros(4))
    assert torch.equal(CountSketch([5], 4, seed=2).buckets, CountSketch([5], 4, seed=2).buckets)
