"""The two claims of ReMax (Li et al., arXiv 2310.10505) on an enumerable toy.

Setup: P prompts, vocabulary {0, 1}, responses of length 2 (4 responses per
prompt, index k = 2 * y0 + y1), an autoregressive softmax policy with
parameters theta[p, c, :] for context c (c = 0: first token; c = 1 + y0:
second token after y0) and a fixed reward table R[p, k].

One draw of an estimator samples y_p ~ pi(.|p) for every prompt and returns
    g = (1/P) * sum_p A_p(y_p) * grad log pi(y_p | p)
with A = r(y) - r(greedy) for ReMax and A = r(y) for REINFORCE. The exact
objective gradient of J = (1/P) sum_p sum_y pi(y|p) R[p, y] comes from
autograd on J itself, and exact means / covariances of g come from
enumerating all 4^P joint outcomes.
"""

from __future__ import annotations

import itertools
import math

import torch

from remax_ray.algo.advantages import reinforce_advantages, reinforce_mean_advantages, remax_advantages
from remax_ray.algo.logprobs import token_logprobs

P = 3
M = 50_000  # Monte-Carlo draws; ~0.1 s
# Explicit logits with a clear argmax everywhere (greedy is well defined).
THETA = torch.tensor(
    [
        [[0.3, -0.2], [0.5, 0.0], [-0.4, 0.1]],
        [[-0.6, 0.4], [0.2, -0.3], [0.0, 0.7]],
        [[0.1, 0.0], [-0.5, 0.5], [0.8, -0.1]],
    ]
)
# A large common offset (+5) is what ReMax's baseline removes; REINFORCE
# carries it into every sample and its variance scales with offset^2.
REWARDS = 5.0 + torch.tensor([[1.0, 0.0, 0.5, 0.2], [0.0, 1.0, 0.3, 0.8], [0.6, 0.1, 0.9, 0.0]])
Y0 = torch.tensor([0, 0, 1, 1])
Y1 = torch.tensor([0, 1, 0, 1])


def _log_pi(theta: torch.Tensor) -> torch.Tensor:
    """theta [P, 3, 2] -> log pi(k | p) [P, 4] via the library's token_logprobs."""
    first = theta[:, 0].unsqueeze(1).expand(P, 4, 2)  # [P, 4, 2]
    second = theta[:, 1:][:, Y0]  # context 1 + y0 -> [P, 4, 2]
    logits = torch.stack([first, second], dim=2).reshape(P * 4, 2, 2)
    tokens = torch.stack([Y0, Y1], dim=1).repeat(P, 1)  # [P*4, 2]
    return token_logprobs(logits, tokens).sum(-1).view(P, 4)


def _setup() -> dict[str, torch.Tensor]:
    theta = THETA.clone()
    log_pi = _log_pi(theta)
    pi = log_pi.exp().double()
    # G[p, k] = grad_theta log pi(k | p), flattened: [P, 4, D]; one jacobian call.
    grads = torch.autograd.functional.jacobian(_log_pi, theta).reshape(P, 4, -1).double()
    greedy_y0 = THETA[:, 0].argmax(-1)
    greedy_y1 = THETA[torch.arange(P), 1 + greedy_y0].argmax(-1)
    greedy_k = 2 * greedy_y0 + greedy_y1
    theta_req = THETA.clone().requires_grad_(True)
    objective = (_log_pi(theta_req).exp() * REWARDS).sum() / P
    (exact,) = torch.autograd.grad(objective, theta_req)
    return {
        "pi": pi,
        "grads": grads,
        "greedy_scores": REWARDS[torch.arange(P), greedy_k].double(),
        "exact": exact.reshape(-1).double(),
    }


def _advantage_table(kind: str, greedy_scores: torch.Tensor) -> torch.Tensor:
    """Advantage of each of the 4 responses per prompt, via the library: [P, 4]."""
    scores = REWARDS.double()
    return remax_advantages(scores, greedy_scores) if kind == "remax" else reinforce_advantages(scores)


def _exact_moments(
    adv: torch.Tensor, pi: torch.Tensor, grads: torch.Tensor
) -> tuple[torch.Tensor, float, float]:
    """Enumerate the 4^P joint outcomes: (mean [D], trace of cov, Var(||g - mean||^2))."""
    outcomes, probs = [], []
    for ks in itertools.product(range(4), repeat=P):
        g = sum(adv[p, k] * grads[p, k] for p, k in enumerate(ks)) / P
        outcomes.append(g)
        probs.append(math.prod(float(pi[p, k]) for p, k in enumerate(ks)))
    g_all, w = torch.stack(outcomes), torch.tensor(probs, dtype=torch.float64)
    mean = (w[:, None] * g_all).sum(0)
    sq_dev = ((g_all - mean) ** 2).sum(-1)
    trace = float((w * sq_dev).sum())
    return mean, trace, float((w * (sq_dev - trace) ** 2).sum())


def _monte_carlo(adv: torch.Tensor, pi: torch.Tensor, grads: torch.Tensor, seed: int) -> torch.Tensor:
    """M independent draws of the estimator: [M, D]."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(pi.float(), M, replacement=True, generator=gen)  # [P, M]
    rows = torch.arange(P)[:, None]
    return (adv[rows, idx].unsqueeze(-1) * grads[rows, idx]).sum(0) / P


def _within_5_se(samples: torch.Tensor, target: torch.Tensor) -> bool:
    # Per coordinate the sample mean is ~ Normal(target, sd^2 / M) by the CLT
    # (M = 50k, bounded summands). |z| > 5 has probability 5.7e-7, so over
    # 18 coordinates a correct estimator fails with probability < 1e-5; the
    # seed is fixed, so the test is deterministic anyway. 1e-6 absorbs float32
    # rounding of the gradients on near-constant coordinates.
    se = samples.std(0) / math.sqrt(samples.shape[0])
    return bool(((samples.mean(0) - target).abs() <= 5 * se + 1e-6).all())


def test_exact_gradient_is_score_function_sum() -> None:
    s = _setup()
    # sum_y pi(y) r(y) grad log pi(y) = grad J (log-derivative trick), and the
    # greedy baseline term vanishes in expectation: sum_y pi(y) grad log pi(y) = 0.
    score_fn = (s["pi"][..., None] * REWARDS.double()[..., None] * s["grads"]).sum((0, 1)) / P
    torch.testing.assert_close(score_fn, s["exact"], atol=1e-5, rtol=1e-5)
    assert s["exact"].abs().max() > 1e-2  # non-trivial target
    for kind in ("remax", "reinforce"):
        mean, _, _ = _exact_moments(_advantage_table(kind, s["greedy_scores"]), s["pi"], s["grads"])
        torch.testing.assert_close(mean, s["exact"], atol=1e-5, rtol=1e-5)


def test_remax_estimator_is_unbiased_monte_carlo() -> None:
    s = _setup()
    adv = _advantage_table("remax", s["greedy_scores"])
    samples = _monte_carlo(adv, s["pi"], s["grads"], seed=0)
    assert _within_5_se(samples, s["exact"])
    # The check has power: an estimator whose mean is off by half of the
    # gradient is rejected on the same samples.
    assert not _within_5_se(samples * 0.5, s["exact"])


def test_remax_variance_below_reinforce() -> None:
    s = _setup()
    traces = {}
    for kind, seed in (("remax", 1), ("reinforce", 2)):
        adv = _advantage_table(kind, s["greedy_scores"])
        _, exact_trace, var_sq_dev = _exact_moments(adv, s["pi"], s["grads"])
        samples = _monte_carlo(adv, s["pi"], s["grads"], seed=seed)
        mc_trace = float(samples.var(0).sum())
        # The sample trace is (up to an O(1/M) mean-correction) the mean of M
        # i.i.d. ||g - mu||^2, so its standard error is sqrt(Var(||g-mu||^2)/M),
        # computed exactly above; 5 SE as in the mean test.
        se = math.sqrt(var_sq_dev / M)
        assert abs(mc_trace - exact_trace) < 5 * se, (kind, mc_trace, exact_trace, se)
        traces[kind] = (exact_trace, mc_trace)
    exact_ratio = traces["remax"][0] / traces["reinforce"][0]
    mc_ratio = traces["remax"][1] / traces["reinforce"][1]
    assert exact_ratio < 0.5, exact_ratio
    assert mc_ratio < 0.5, mc_ratio


def _joint_moments_batch_mean(pi: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, float]:
    """reinforce_mean's advantage of one prompt depends on the other prompts' samples, so it is
    formed per joint outcome (the P sampled scores are its batch): exact (mean [D], trace of cov)."""
    outcomes, probs = [], []
    for ks in itertools.product(range(4), repeat=P):
        scores = REWARDS[torch.arange(P), torch.tensor(ks)].double().unsqueeze(1)  # [P, 1]
        adv = reinforce_mean_advantages(scores).squeeze(1)
        outcomes.append(sum(adv[p] * grads[p, k] for p, k in enumerate(ks)) / P)
        probs.append(math.prod(float(pi[p, k]) for p, k in enumerate(ks)))
    g_all, w = torch.stack(outcomes), torch.tensor(probs, dtype=torch.float64)
    mean = (w[:, None] * g_all).sum(0)
    return mean, float((w * ((g_all - mean) ** 2).sum(-1)).sum())


def test_batch_mean_baseline_is_unbiased_and_removes_the_common_offset() -> None:
    s = _setup()
    mean, trace = _joint_moments_batch_mean(s["pi"], s["grads"])
    # Leave-one-out: each prompt's baseline is made of the other prompts' samples, independent of
    # its own, so the estimator's exact mean is the gradient (including the sample would bias it).
    torch.testing.assert_close(mean, s["exact"], atol=1e-5, rtol=1e-5)
    # The +5 common to every prompt is what REINFORCE's variance carries and this baseline removes.
    _, reinforce_trace, _ = _exact_moments(_advantage_table("reinforce", s["greedy_scores"]), s["pi"], s["grads"])
    assert trace < 0.1 * reinforce_trace, (trace, reinforce_trace)
