"""The learner's experience stage: everything the update needs that no gradient flows through.

``make_experience`` (in :class:`~remax_ray.learner.learner.Learner`) fills one
:class:`MicroExperience` per micro-batch: reference log-probs always; for PPO also the old log-probs
and the critic's values, then token-level advantages and returns for the whole batch (from the
estimator's registered function, ``EstimatorSpec.fn``). The update stage then runs epochs x
mini-batches over these records with the algorithm's loss.

ReMax, REINFORCE, RLOO and GRPO record no old log-probs: they take one optimizer step per batch, so
the log-probs of the update's own forward are those of the policy before that step, and their
KL-in-reward term is computed there from them (see ``Learner._policy_loss``). That saves a whole
policy forward per step. Those are the sampling policy's log-probs only without ``rollout.overlap``;
with it the batch was sampled one update earlier, and the update weights each token by the truncated
importance ratio of the learner's policy to the generator's (``algo/offpolicy.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from remax_ray.algo import (
    EstimatorSpec,
    Moments,
    clip_scores,
    kl_estimate,
    masked_moments,
    masked_whiten,
    merge_all,
    outcome_advantages,
    token_rewards,
)
from remax_ray.config import AlgoConfig
from remax_ray.data.rollouts import PromptRollout
from remax_ray.learner import dist
from remax_ray.learner.batch import SequenceBatch


@dataclass
class MicroExperience:
    """One micro-batch and its no-grad tensors, all [m, L-1] in the batch's shifted frame."""

    batch: SequenceBatch
    ref_logp: Tensor | None
    """None when ``algo.kl_coef`` is 0: nothing reads it, so the reference forward is skipped."""
    old_logp: Tensor | None = None
    old_values: Tensor | None = None
    advantages: Tensor | None = None
    """Token-level advantages (critic algorithms); None = formed in the update from its own forward."""
    returns: Tensor | None = None
    """The critic's regression targets."""
    padding: bool = False
    """An empty micro-batch that only keeps this learner rank in step with the others."""
    rows: list[int] = field(default_factory=list)
    """Which of the rank's flattened samples (``flatten_samples`` order) its rows are."""


@dataclass
class Experience:
    micro: list[MicroExperience]
    num_tokens: float
    num_seqs: float
    stats: dict[str, float] = field(default_factory=dict)
    keys_by_rank: list[list[tuple[int, int]]] | None = None
    """Every rank's sequence keys (``minibatch.sequence_keys``), where the update draws mini-batches
    over the whole batch; None where one optimizer step takes the whole batch."""


def pooled_scores(spec: EstimatorSpec, rollouts: list[PromptRollout], score_clip: float,
                  device: torch.device) -> tuple[float, int] | None:
    """(sum, count) of the clipped sampled scores of the whole step's batch, for an estimator whose
    baseline pools the batch (``batch_baseline``); None for the others. With several learner ranks
    each holds a share of the prompts, so the sums are all-reduced: every rank must call this,
    one without prompts too, and each then forms the advantages one learner would."""
    if not spec.batch_baseline:
        return None
    scores = [s for r in rollouts for s in r.sample_scores]
    local = clip_scores(torch.tensor(scores, dtype=torch.float32), score_clip) if scores else torch.zeros(0)
    totals = dist.sum_floats({"sum": float(local.double().sum()), "count": float(len(scores))}, device)
    return totals["sum"], int(totals["count"])


def sequence_scores(spec: EstimatorSpec, estimator: str, rollouts: list[PromptRollout],
                    score_clip: float = 0.0, batch: tuple[float, int] | None = None
                    ) -> tuple[Tensor, dict[str, float]]:
    """Per sampled response [N] (prompt-major): the outcome advantage, or for a critic algorithm
    the score (GAE turns it into token advantages later), both from scores clipped to
    ``score_clip`` (see ``algo.clip_scores``: the same quantity for every estimator). Plus the raw
    rewards' means and the moments of the returned values (``score_adv_*``). ``batch``: what
    :func:`pooled_scores` returned (the whole batch's sum and count across learner ranks)."""
    raw = torch.tensor([r.sample_scores for r in rollouts], dtype=torch.float32)  # [B, n]
    stats = {"reward_sample": raw.mean().item()}
    scores = clip_scores(raw, score_clip)
    if spec.needs_critic:
        out = scores.reshape(-1)
    else:
        greedy = None
        if spec.needs_greedy:
            raw_greedy = torch.tensor([r.greedy_score for r in rollouts], dtype=torch.float32)  # [B]
            stats["reward_greedy"] = raw_greedy.mean().item()
            greedy = clip_scores(raw_greedy, score_clip)
        out = outcome_advantages(estimator, scores, greedy, batch=batch).reshape(-1)
    stats |= {"score_adv_mean": out.mean().item(), "score_adv_std": out.std(unbiased=False).item()}
    return out, stats


def assign_critic_advantages(
        micro: list[MicroExperience], spec: EstimatorSpec, algo: AlgoConfig,
        moments: Callable[[list[tuple[Tensor, Tensor]]], tuple[float, float]] = masked_moments
) -> dict[str, float]:
    """Token rewards (-beta * KL per token + the score at the end) -> the critic estimator's token
    advantages and returns (``spec.fn``: GAE for ppo), whitened with the statistics of the whole
    batch. Needs old_logp and old_values. ``moments`` gives (mean, std) of masked values: the whole
    batch's, across learner ranks where there are several."""
    kl_coef = algo.kl_coef if algo.kl_placement == "reward" else 0.0
    for me in micro:
        mask = me.batch.mask.to(me.old_logp.device)
        kl = None if me.ref_logp is None else kl_estimate(me.old_logp, me.ref_logp, algo.kl_estimator)
        rewards = token_rewards(me.batch.score_advantages.to(mask.device), mask, kl, kl_coef)
        me.advantages, me.returns = spec.fn(rewards, me.old_values, mask, algo.gamma, algo.lam)
    pairs = [(me.advantages, me.batch.mask.to(me.advantages.device)) for me in micro]
    mean, std = moments(pairs)
    if algo.whiten_advantages:
        for me, (adv, mask) in zip(micro, pairs):
            me.advantages = masked_whiten(adv, mask, mean, std)
    values_mean, _ = moments([(me.old_values, m) for me, (_, m) in zip(micro, pairs)])
    return {"value_mean": values_mean}


def global_stats(stats: dict[str, float], num_seqs: int, device: torch.device) -> dict[str, float]:
    """Per-sequence statistics of this rank's share made global across learner ranks: each
    ``*_mean`` or plain value is a mean over ``num_seqs`` sequences, each ``<x>_std`` a population
    std paired with ``<x>_mean``; every rank's (count, mean, M2) merge (``algo.moments``). The
    identity for one rank."""
    if not dist.active():
        return stats
    ranks = [part for parts in dist.all_lists([(num_seqs, stats)]) for part in parts]
    out = {}
    for key in sorted({k for _, st in ranks for k in st if not k.endswith("_std")}):
        std = key[: -len("_mean")] + "_std" if key.endswith("_mean") else None
        merged = merge_all(Moments(n, st[key], st.get(std, 0.0) ** 2 * n) for n, st in ranks if key in st)
        out[key] = merged.mean
        if std is not None and any(std in st for _, st in ranks):
            out[std] = merged.std
    return out
