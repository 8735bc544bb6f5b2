"""``adv_mean`` / ``adv_std`` are the moments, over the response tokens, of the weight the loss
multiplies each log-prob (PPO: each ratio) by: after the KL-in-reward term, ``algo.score_clip``,
whitening and the importance weights. ``score_adv_*`` keep the estimator's per-sequence output."""

from __future__ import annotations

import math

import pytest
import torch

from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.learner.learner import Learner

from helpers import sequence_logprobs, toy_rollouts

SCORES, GREEDY = [5.0, 0.0, -1.0], 3.0


def _rollouts():
    """One prompt, three samples of 2, 3 and 4 tokens, sampled (says the generator) at log-prob -50 each."""
    rollouts = toy_rollouts(1, 3, scores=lambda i, g: list(SCORES), greedy_score=GREEDY)
    for c in rollouts[0].samples:
        c.logprobs = [-50.0] * len(c.token_ids)
    return rollouts


def _moments(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def test_remax_adv_moments_are_those_of_the_clipped_kl_and_importance_weighted_returns(
        tiny_model, tiny_model_untied):
    beta, cap = 0.5, 0.5
    algo = AlgoConfig(estimator="remax", kl_coef=beta, kl_placement="reward", score_clip=1.0)
    learner = Learner(str(tiny_model), LearnerConfig(micro_batch_size=3), algo, seed=0,
                      reference_path=str(tiny_model_untied), importance_cap=cap)
    rollouts = _rollouts()
    r = rollouts[0]
    seqs = [r.prompt_ids + c.token_ids for c in r.samples]
    with torch.no_grad():
        logp = sequence_logprobs(learner.policy, seqs)
        ref = sequence_logprobs(learner.reference, seqs)
    advantages = [0.0, -1.0, -2.0]  # clip(score, 1) - clip(greedy, 1)
    weights = []
    for j, c in enumerate(r.samples):
        k = len(c.token_ids)
        kl = [a - b for a, b in zip(logp[j][-k:], ref[j][-k:])]  # k1 on the response tokens
        # Return-to-go of -beta * kl plus the advantage at the end, times min(pi / mu, cap) = cap:
        # the generator's -50 makes every ratio e^20.
        weights += [cap * (advantages[j] - beta * sum(kl[t:])) for t in range(k)]
    mean, std = _moments(weights)
    metrics = learner.train_step(rollouts)
    assert metrics["adv_mean"] == pytest.approx(mean, rel=1e-4, abs=1e-6)
    assert metrics["adv_std"] == pytest.approx(std, rel=1e-4)
    assert metrics["score_adv_mean"] == pytest.approx(-1.0)  # the estimator's output, per sequence
    assert metrics["score_adv_std"] == pytest.approx(math.sqrt(2 / 3))
    assert metrics["is_clip_frac"] == 1.0  # every weight was the cap, as assumed above


@pytest.mark.parametrize("whiten", [True, False])
def test_ppo_adv_moments_are_those_of_the_whitened_advantages(tiny_model, whiten):
    algo = AlgoConfig(estimator="ppo", kl_coef=0.0, score_clip=1.0, gamma=1.0, lam=1.0,
                      whiten_advantages=whiten)
    learner = Learner(str(tiny_model), LearnerConfig(micro_batch_size=3), algo, seed=0)
    metrics = learner.train_step(_rollouts())
    if whiten:  # what the clipped surrogate multiplies the ratio by
        assert metrics["adv_mean"] == pytest.approx(0.0, abs=1e-6)
        assert metrics["adv_std"] == pytest.approx(1.0, abs=1e-6)
    else:  # zero initial values, gamma = lambda = 1: every token's advantage is its clipped score
        mean, std = _moments([1.0] * 2 + [0.0] * 3 + [-1.0] * 4)
        assert metrics["adv_mean"] == pytest.approx(mean) and metrics["adv_std"] == pytest.approx(std)
    assert metrics["score_adv_mean"] == pytest.approx(0.0)  # PPO's per-sequence term: the clipped score
    assert metrics["score_adv_std"] == pytest.approx(math.sqrt(2 / 3))
