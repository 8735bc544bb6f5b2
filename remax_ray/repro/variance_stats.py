"""The statistics of the variance measurement (:mod:`.variance`), pure torch and standard library.

Notation: P prompts x, sampled rewards r(x, d) (n per prompt), the greedy response's reward r_g(x),
the prompt's mean mu(x) = E_d r(x, d) and its within-prompt variance v(x) = Var_d r(x, d).

Reward statistics (:func:`reward_stats`) are unbiased for their population values: a plug-in
E_x[(r_g - mu_hat)^2] or E_x[mu_hat^2] carries the noise of mu_hat, v(x) / n, so each per-prompt term
subtracts v_hat(x) / n (v_hat with n - 1 degrees of freedom). They can then come out slightly
negative when the true value is near 0. The paper's condition compares two of them: the greedy
baseline reduces the variance when E_x[(r_g - mu)^2] < E_x[mu^2] (``condition`` < 0).

Estimators are weights on the per-sample gradients h(x, j) = grad log pi(y_j | x) of one batch (one
draw): g = sum_x sum_j w(x, j) h(x, j), with j in {0, 1} the draw's two samples of x (ReMax spends its
second generation on the greedy response, RLOO on a second sample). Every estimator is linear in the
rewards, so a reward shifted by an offset sigma * z(x) gives w(r + sigma z) = w(r) + sigma w(z):
:func:`shifted_weights` adds the offset's own weights, and ReMax's and RLOO's are exactly zero.
"""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist

import torch
from torch import Tensor

from remax_ray.algo.advantages import ESTIMATORS, reinforce_mean_advantages

# Generations per prompt and draw: ReMax's sample + greedy, RLOO's two samples.
SAMPLES_PER_DRAW = 2
# Every registered estimator that :func:`shifted_weights` can shift (linear in the scores; no critic,
# whose values the measurement has no model for), in the registry's order.
MEASURED_ESTIMATORS = tuple(name for name, spec in ESTIMATORS.items()
                            if spec.linear_in_scores and not spec.needs_critic)
REWARD_STATS = ("mean_reward", "mean_greedy_reward", "within", "between", "greedy_gap2", "mean_sq",
                "batch_mean_gap2", "condition", "corr_greedy_mean")


def prompt_offset(prompt: str) -> float:
    """z(x): a fixed standard-normal value from the prompt's text (SHA-256, not Python's salted
    ``hash``, so every process and every sitting gets the same one)."""
    top53 = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big") >> 11
    return NormalDist().inv_cdf((top53 + 0.5) / 2.0**53)  # strictly inside (0, 1)


def leave_one_out_mean(values: Tensor) -> Tensor:
    """[P] -> [P]: the mean of the other P - 1 entries (P >= 2): the baseline of the trained
    ``reinforce_mean`` estimator (:func:`remax_ray.algo.advantages.reinforce_mean_advantages`),
    so the stage measures exactly what the runs train with."""
    if values.dim() != 1 or values.numel() < 2:
        raise ValueError(f"need a vector of at least 2 values, got shape {tuple(values.shape)}")
    return values - reinforce_mean_advantages(values.unsqueeze(1)).squeeze(1)


def estimator_weights(name: str, sampled: Tensor, greedy: Tensor) -> Tensor:
    """[P, 2] weights of one batch's gradient on its samples h(x, 0), h(x, 1), the 1/P included.

    ``sampled``: [P, 2] rewards of the draw's two samples of each prompt; ``greedy``: [P].

    The estimator gets the first ``min_samples`` of a prompt's samples (what its repro arm samples)
    and the greedy reward; each sample's weight is its advantage averaged over those samples:

    - remax: (r(x, 0) - r_g(x)) / P on the first sample;
    - reinforce: r(x, 0) / P;
    - reinforce_mean: (r(x, 0) - the mean of the other prompts' r(., 0)) / P: a batch-mean baseline
      that leaves each sample out of its own baseline (so it stays unbiased);
    - rloo: two samples, A_0 = r_0 - r_1 and A_1 = r_1 - r_0, averaged over the two: / (2P).
    """
    if sampled.dim() != 2 or sampled.shape[1] != SAMPLES_PER_DRAW or greedy.shape != sampled.shape[:1]:
        raise ValueError(f"sampled must be [P, {SAMPLES_PER_DRAW}] and greedy [P], got "
                         f"{tuple(sampled.shape)} and {tuple(greedy.shape)}")
    if name not in MEASURED_ESTIMATORS:
        why = ("unknown" if name not in ESTIMATORS else
               "not measured: its advantages are not linear in the scores, or it needs a critic")
        raise ValueError(f"estimator {name!r} is {why}; measured: {', '.join(MEASURED_ESTIMATORS)}")
    spec = ESTIMATORS[name]
    m = spec.min_samples
    if m > SAMPLES_PER_DRAW:
        raise ValueError(f"{name} needs {m} samples per prompt; a draw has {SAMPLES_PER_DRAW}")
    w = torch.zeros_like(sampled)
    # The registered advantage function itself, so the stage measures exactly what the runs train with.
    w[:, :m] = spec.fn(sampled[:, :m], greedy) / m
    return w / sampled.shape[0]


def shifted_weights(name: str, sampled: Tensor, greedy: Tensor, offsets: Tensor, sigma: float) -> Tensor:
    """The weights for rewards shifted by ``sigma * offsets`` ([P], the same for every response to a
    prompt), as w(r) + sigma * w(z): an estimator that cancels the offset gets exactly w(r)."""
    base = estimator_weights(name, sampled, greedy)
    if sigma == 0:
        return base
    z = offsets.to(sampled.dtype)
    return base + sigma * estimator_weights(name, z.unsqueeze(1).expand(-1, 2), z)


def _moments(sampled: Tensor, greedy: Tensor) -> dict[str, Tensor]:
    """The statistics for a batch of resamples: ``sampled`` [B, P, n], ``greedy`` [B, P] -> [B] each."""
    n = sampled.shape[-1]
    mu = sampled.mean(-1)
    v = sampled.var(-1, unbiased=True)
    noise = v / n  # the variance of mu_hat around mu
    within = v.mean(-1)
    between = mu.var(-1, unbiased=True) - within / n
    greedy_gap2 = ((greedy - mu) ** 2 - noise).mean(-1)
    mean_sq = (mu**2 - noise).mean(-1)
    gc, mc = greedy - greedy.mean(-1, keepdim=True), mu - mu.mean(-1, keepdim=True)
    denom = (gc.pow(2).sum(-1) * mc.pow(2).sum(-1)).sqrt()
    corr = torch.where(denom > 0, (gc * mc).sum(-1) / denom, torch.full_like(denom, math.nan))
    return {"mean_reward": mu.mean(-1), "mean_greedy_reward": greedy.mean(-1), "within": within,
            "between": between, "greedy_gap2": greedy_gap2, "mean_sq": mean_sq,
            # E_x[(mu - mu_bar)^2] is Var_x mu by definition: what a batch-mean baseline leaves.
            "batch_mean_gap2": between, "condition": greedy_gap2 - mean_sq, "corr_greedy_mean": corr}


def reward_stats(sampled: Tensor, greedy: Tensor) -> dict[str, float]:
    """``sampled`` [P, n] (n >= 2), ``greedy`` [P] -> the statistics of the module docstring:

    - within = E_x v(x); between = Var_x mu(x) (= batch_mean_gap2, E_x[(mu - mu_bar)^2]);
    - greedy_gap2 = E_x[(r_g - mu)^2]; mean_sq = E_x[mu^2]; condition = greedy_gap2 - mean_sq;
    - corr_greedy_mean = Pearson corr(r_g, mu_hat) across prompts (NaN if either is constant);
    - mean_reward, mean_greedy_reward.
    """
    _check_rewards(sampled, greedy)
    out = _moments(sampled.double().unsqueeze(0), greedy.double().unsqueeze(0))
    return {k: float(v[0]) for k, v in out.items()}


def bootstrap_reward_stats(sampled: Tensor, greedy: Tensor, resamples: int = 2000, seed: int = 0,
                           level: float = 0.95) -> dict[str, list[float]]:
    """Percentile CIs of :func:`reward_stats` from ``resamples`` resamples of the prompts."""
    _check_rewards(sampled, greedy)
    p = sampled.shape[0]
    idx = torch.randint(p, (resamples, p), generator=torch.Generator().manual_seed(seed))
    out = _moments(sampled.double()[idx], greedy.double()[idx])
    return {k: percentile_ci(v, level) for k, v in out.items()}


def _check_rewards(sampled: Tensor, greedy: Tensor) -> None:
    if sampled.dim() != 2 or sampled.shape[1] < 2 or greedy.shape != sampled.shape[:1]:
        raise ValueError(f"sampled must be [P, n >= 2] and greedy [P], got {tuple(sampled.shape)} and "
                         f"{tuple(greedy.shape)}")


def percentile_ci(values: Tensor, level: float = 0.95) -> list[float]:
    """[lo, hi] percentile interval of ``values`` (NaNs ignored; [nan, nan] if nothing is left)."""
    v = values.double()
    if bool(torch.isnan(v).all()):
        return [math.nan, math.nan]
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    return [float(x) for x in torch.nanquantile(v, q)]


def draw_variance(grads: Tensor) -> float:
    """E||g_d - E g||^2 from D draws' (sketched) batch gradients [D, k], with D - 1 degrees of freedom."""
    return float(_resampled_variance(_gram(grads), torch.ones(1, grads.shape[0], dtype=torch.float64))[0])


def _gram(grads: Tensor) -> Tensor:
    if grads.dim() != 2 or grads.shape[0] < 2:
        raise ValueError(f"need [D >= 2, k] gradients, got shape {tuple(grads.shape)}")
    g = grads.double()
    return g @ g.T


def _resampled_variance(gram: Tensor, counts: Tensor) -> Tensor:
    """The sample variance of each resample, given how often it drew each draw: ``counts`` [B, D]
    (rows sum to D) -> [B]. With c the counts, sum_i c_i ||g_i||^2 - ||sum_i c_i g_i||^2 / D over
    D - 1: only the Gram matrix of the draws is needed, never the k-dimensional vectors again."""
    d = gram.shape[0]
    squares = counts @ gram.diagonal()
    total = ((counts @ gram) * counts).sum(-1) / d
    return (squares - total) / (d - 1)


def bootstrap_counts(draws: int, resamples: int, seed: int) -> Tensor:
    """[resamples, draws] counts of each draw in resamples of the draws (with replacement)."""
    idx = torch.randint(draws, (resamples, draws), generator=torch.Generator().manual_seed(seed))
    return torch.zeros(resamples, draws, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones(resamples, draws, dtype=torch.float64))


def variance_table(grads: dict[str, Tensor], resamples: int = 2000, seed: int = 0, level: float = 0.95,
                   reference: str = "remax") -> dict[str, dict[str, float | list[float]]]:
    """Per estimator ([D, k] batch gradients over the same D draws): its variance with a bootstrap CI
    over draws, its ratio to ``reference``'s with a CI from the same (paired) resamples, and
    ``mean_norm2``, an unbiased estimate of ||E g||^2 (||g_bar||^2 - variance / D)."""
    d = next(iter(grads.values())).shape[0]
    counts = bootstrap_counts(d, resamples, seed)
    ones = torch.ones(1, d, dtype=torch.float64)
    point, boot, norm2 = {}, {}, {}
    for name, g in grads.items():
        gram = _gram(g)
        point[name] = float(_resampled_variance(gram, ones)[0])
        boot[name] = _resampled_variance(gram, counts)
        norm2[name] = float(gram.sum() / d**2) - point[name] / d
    out: dict[str, dict[str, float | list[float]]] = {}
    for name in grads:
        row: dict[str, float | list[float]] = {"variance": point[name], "ci": percentile_ci(boot[name], level),
                                               "mean_norm2": norm2[name]}
        if reference in grads:
            ref = point[reference]
            row["ratio_to_" + reference] = point[name] / ref if ref > 0 else math.nan
            row["ratio_ci"] = percentile_ci(boot[name] / boot[reference], level)
        out[name] = row
    return out
