"""Advantage estimators.

Outcome-level estimators map sequence scores [B, n] (B prompts, n sampled
responses each) to advantages [B, n]. ReMax (Li et al., arXiv 2310.10505)
subtracts the score of the greedy response to the same prompt: the greedy
response does not depend on the sampled one, so the baseline keeps the
gradient unbiased while removing the prompt-dependent part of the reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from remax_ray.algo.moments import masked_moments_of


def _check_scores(scores: Tensor, min_samples: int, name: str) -> None:
    """Raise ValueError unless scores is [B, n] with n >= min_samples."""
    if scores.dim() != 2:
        raise ValueError(f"{name}: scores must be [B, n], got shape {tuple(scores.shape)}")
    if scores.shape[1] < min_samples:
        raise ValueError(
            f"{name} needs at least {min_samples} samples per prompt (n >= {min_samples}), "
            f"got n = {scores.shape[1]}"
        )


def remax_advantages(scores: Tensor, greedy_scores: Tensor) -> Tensor:
    """ReMax: scores [B, n] minus the greedy response's score greedy_scores [B] -> [B, n]."""
    _check_scores(scores, 1, "remax")
    if greedy_scores is None or greedy_scores.shape != scores.shape[:1]:
        got = None if greedy_scores is None else tuple(greedy_scores.shape)
        raise ValueError(f"remax: greedy_scores must be [B] = [{scores.shape[0]}], got {got}")
    return scores - greedy_scores.to(scores.dtype).unsqueeze(1)


def reinforce_advantages(scores: Tensor, greedy_scores: Tensor | None = None) -> Tensor:
    """Plain REINFORCE, no baseline: scores [B, n] -> a copy [B, n]; greedy ignored."""
    _check_scores(scores, 1, "reinforce")
    return scores.clone()


def reinforce_mean_advantages(scores: Tensor, greedy_scores: Tensor | None = None, *,
                              batch_sum: float | None = None, batch_count: int | None = None) -> Tensor:
    """REINFORCE with a batch-mean baseline: each score minus the mean of every OTHER score of the batch.

    A_i = r_i - (S - r_i) / (N - 1), with S the sum and N the number of sampled scores over the
    whole batch (all B prompts x n samples). Leaving the sample out keeps the baseline independent
    of it, so the estimator stays unbiased, as RLOO's does. The baseline removes an offset common
    to the whole batch but no per-prompt one: the control that separates what ReMax's per-prompt
    greedy baseline adds from what any baseline would.

    Args:
        scores: [B, n] (B * n = this tensor's samples); greedy_scores: ignored.
        batch_sum, batch_count: S and N of the whole batch when ``scores`` is only a share of it
            (one learner rank's prompts); both default to this tensor's own. N >= 2.

    Returns:
        [B, n].
    """
    _check_scores(scores, 1, "reinforce_mean")
    if (batch_sum is None) != (batch_count is None):
        raise ValueError("reinforce_mean: give both batch_sum and batch_count, or neither")
    total = scores.sum() if batch_sum is None else torch.as_tensor(batch_sum, dtype=scores.dtype)
    count = scores.numel() if batch_count is None else int(batch_count)
    if count < 2:
        raise ValueError(f"reinforce_mean needs at least 2 sampled responses in the batch, got {count}")
    return scores - (total - scores) / (count - 1)


def rloo_advantages(scores: Tensor, greedy_scores: Tensor | None = None) -> Tensor:
    """REINFORCE leave-one-out: score minus the mean of the other n-1 samples.

    The baseline excludes the sample itself, so it is independent of it and
    the estimator stays unbiased (including the sample would bias by 1/n).

    Args:
        scores: [B, n], n >= 2; greedy_scores: ignored.

    Returns:
        [B, n].
    """
    _check_scores(scores, 2, "rloo")
    n = scores.shape[1]
    others_mean = (scores.sum(dim=1, keepdim=True) - scores) / (n - 1)
    return scores - others_mean


def grpo_advantages(scores: Tensor, greedy_scores: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """GRPO: (score - group mean) / (group std + eps).

    The std is the population std (unbiased=False) of the n samples of one
    prompt: it is the statistic of the group itself and gives exactly +-1
    for a group of two different scores. A group with equal scores gets 0.

    Args:
        scores: [B, n], n >= 2; greedy_scores: ignored; eps: > 0.

    Returns:
        [B, n].
    """
    _check_scores(scores, 2, "grpo")
    mean = scores.mean(dim=1, keepdim=True)
    std = scores.std(dim=1, keepdim=True, unbiased=False)
    return (scores - mean) / (std + eps)


def gae_advantages(
    token_rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over right-padded responses.

    delta_t = r_t + gamma * V_{t+1} - V_t,  A_t = delta_t + gamma * lam * A_{t+1},
    with V and r taken as 0 outside the mask (the episode ends at the last
    response token, so no value is bootstrapped past it).

    Args:
        token_rewards: [N, T]; values: [N, T]; mask: [N, T] 0/1 prefix mask.

    Returns:
        (advantages [N, T], returns [N, T] = advantages + values), both 0
        where mask is 0 and detached (they are regression/PG targets).
    """
    mask = mask.detach().float()
    rewards = token_rewards.detach().float() * mask
    vals = values.detach().float() * mask
    num_steps = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(num_steps)):
        next_value = vals[:, t + 1] if t + 1 < num_steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - vals[:, t]
        # Multiplying by mask resets the recursion on padding, so nothing
        # from past the end leaks into the last real token.
        running = (delta + gamma * lam * running) * mask[:, t]
        adv[:, t] = running
    return adv, (adv + vals) * mask


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator's entry: everything any part of remax-ray needs to know about it, so adding an
    estimator is this entry (and its function) and nothing that branches on its name.

    fn: the advantage function. Outcome-level ones take (scores [B, n], greedy [B] | None) -> [B, n]
        (:func:`outcome_advantages` dispatches them); a critic estimator's (``needs_critic``) takes
        (token rewards [N, T], values [N, T], mask [N, T], gamma, lam) -> (advantages, returns), and
        the learner's experience stage calls it once the critic's values are in.
    summary: a few words on what the estimator's baseline is, for the help text of ``algo.estimator``.
    needs_greedy: the rollout must also produce (and score) one greedy response per prompt.
    min_samples: minimum sampled responses per prompt (n); the repro runs each arm with at least
        this many, and the variance measurement gives each estimator this many of a draw's samples.
    needs_critic: a value model supplies per-token values; advantages are token-level.
    uses_ratio: the loss is PPO's clipped importance ratio against the log-probs recorded before
        the update (an extra no-grad policy pass); allows several epochs and mini-batches.
    batch_baseline: the baseline pools every sampled score of the step's batch; fn then takes
        ``batch_sum`` and ``batch_count`` keywords, which the learner fills with the whole batch's
        (summed over learner ranks), so K ranks compute the advantages of one learner.
    linear_in_scores: fn is linear in the scores (sampled and greedy together), so a reward offset
        adds exactly the offset's own advantages. The variance measurement
        (``repro/variance_stats``) relies on it and measures exactly these estimators; GRPO's
        division by the group's std is not linear, and a critic's values are no function of the
        scores at all.
    """

    fn: Callable
    summary: str
    needs_greedy: bool
    min_samples: int
    needs_critic: bool = False
    uses_ratio: bool = False
    batch_baseline: bool = False
    linear_in_scores: bool = False


ESTIMATORS: dict[str, EstimatorSpec] = {
    "remax": EstimatorSpec(remax_advantages, "REINFORCE with the greedy response's reward as baseline",
                           needs_greedy=True, min_samples=1, linear_in_scores=True),
    "reinforce": EstimatorSpec(reinforce_advantages, "no baseline", needs_greedy=False, min_samples=1,
                               linear_in_scores=True),
    "reinforce_mean": EstimatorSpec(reinforce_mean_advantages,
                                    "baseline: the mean reward of the batch's other samples",
                                    needs_greedy=False, min_samples=1, batch_baseline=True,
                                    linear_in_scores=True),
    "rloo": EstimatorSpec(rloo_advantages, "baseline: the mean reward of the prompt's other samples",
                          needs_greedy=False, min_samples=2, linear_in_scores=True),
    "grpo": EstimatorSpec(grpo_advantages, "the prompt's rewards standardised by their mean and std",
                          needs_greedy=False, min_samples=2),
    "ppo": EstimatorSpec(gae_advantages, "GAE with a learned value model, clipped surrogate",
                         needs_greedy=False, min_samples=1, needs_critic=True, uses_ratio=True),
}


def get_estimator(name: str) -> EstimatorSpec:
    """Look up an estimator by name; ValueError listing valid names otherwise."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; valid: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]


def clip_scores(scores: Tensor, score_clip: float) -> Tensor:
    """``algo.score_clip``: the reward's score of each response clamped to [-c, c] (c = 0: unchanged).

    This is the one quantity the clip applies to, for every estimator: the raw score of every
    response, sampled and greedy, *before* the estimator forms its advantage (ReMax subtracts the
    clipped greedy score from the clipped sample score; RLOO and GRPO take their group statistics of
    clipped scores; PPO's critic is rewarded with the clipped score). Why not the advantage:

    - A clip after the baseline breaks what makes a baseline harmless. E[(r - b) grad log pi] is the
      policy gradient for any b independent of the sample; E[clip(r - b) grad log pi] is the gradient
      of E[clip(r - b)], an objective that changes with b. Clipping the score first keeps each
      estimator what it was (ReMax, REINFORCE and RLOO unbiased), for the clipped reward.
    - The advantages of different estimators are in different units (GRPO's are z-scores, the
      others' rewards), so one number would mean something else for each; scores share one unit.
    - It is the reward clip of DeepSpeed-Chat's PPO (``clip_reward_value`` clamps the reward
      model's score), so PPO keeps the meaning it had.

    The KL term of ``algo.kl_placement=reward`` is not clipped: it is the penalty, not the reward.
    """
    if score_clip < 0:
        raise ValueError(f"score_clip must be >= 0, got {score_clip}")
    return scores.clamp(-score_clip, score_clip) if score_clip else scores


def outcome_advantages(name: str, scores: Tensor, greedy_scores: Tensor | None = None, *,
                       batch: tuple[float, int] | None = None) -> Tensor:
    """Dispatch an outcome-level estimator: scores [B, n], greedy [B] -> [B, n]. ``batch``: (sum,
    count) of the whole batch's scores, for a ``batch_baseline`` estimator whose batch is split
    across learner ranks (ignored by the others; default: ``scores`` is the whole batch)."""
    spec = get_estimator(name)
    if spec.needs_critic:
        raise ValueError(f"{name!r} is token-level; call {spec.fn.__name__} with token rewards and values")
    if spec.needs_greedy and greedy_scores is None:
        raise ValueError(f"{name!r} needs greedy_scores (the score of the greedy response per prompt)")
    if spec.batch_baseline and batch is not None:
        return spec.fn(scores, greedy_scores, batch_sum=batch[0], batch_count=batch[1])
    return spec.fn(scores, greedy_scores)


def token_rewards(
    score_advantages: Tensor,
    mask: Tensor,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
) -> Tensor:
    """Per-token rewards with the KL penalty placed in the reward.

    r_t = -kl_coef * kl_t on response tokens, plus the score (or outcome advantage) at the last
    response token: the sequence-level reward arrives when the response ends.

    Args:
        score_advantages: [N] one score (PPO) or outcome advantage (ReMax & co.) per response, from
            scores already clipped by :func:`clip_scores`.
        mask: [N, T] 0/1 response mask (one contiguous run of ones per row, anywhere in the row).
        kl: optional [N, T] per-token KL estimate (see kl.kl_estimate).
        kl_coef: KL penalty weight.

    Returns:
        [N, T] float32, 0 where mask is 0. Rows with an empty mask are all 0.
    """
    mask = mask.float()
    score = score_advantages.float()
    rewards = torch.zeros_like(mask)
    if kl is not None and kl_coef != 0.0:
        rewards = -kl_coef * kl.float() * mask
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask > 0, positions, torch.full_like(positions, -1)).max(dim=1).values  # [N]
    has_tokens = last >= 0
    rows = torch.arange(mask.shape[0], device=mask.device)[has_tokens]
    return rewards.index_put((rows, last[has_tokens]), score[has_tokens], accumulate=True)


def token_returns(
    score_advantages: Tensor,
    mask: Tensor,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
) -> Tensor:
    """Undiscounted reward-to-go of :func:`token_rewards`: return_t = sum_{s >= t} r_s.

    Each action is responsible for the KL of every later token it caused and for the final score.
    This is GAE with gamma = lambda = 1 and zero values, which the tests check.

    Returns:
        [N, T] float32, 0 where mask is 0.
    """
    rewards = token_rewards(score_advantages, mask, kl, kl_coef)
    return rewards.flip(1).cumsum(1).flip(1) * mask.float()


def masked_whiten(values: Tensor, mask: Tensor, mean: float, std: float, eps: float = 1e-8) -> Tensor:
    """(values - mean) / (std + eps) on the mask, 0 elsewhere.

    mean and std are passed in (see :func:`masked_moments`) because a batch's micro-batches are
    whitened with the statistics of the whole batch, not each their own.
    """
    return (values - mean) / (std + eps) * mask


def masked_moments(pairs: list[tuple[Tensor, Tensor]]) -> tuple[float, float]:
    """Mean and population std of the masked entries of several (values, mask) pairs together
    ((0, 1) when no entry is on a mask); see ``algo.moments`` for why they merge as (count, mean, M2)."""
    moments = masked_moments_of(pairs)
    return (moments.mean, moments.std) if moments.count else (0.0, 1.0)
