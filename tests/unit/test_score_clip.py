"""``algo.score_clip`` clips one quantity for every estimator: the reward's score of each response
(sampled and greedy), before the estimator sees it. Checked by hand on the weights the learner's loss
actually receives, for each estimator family (baseline-free, greedy baseline, group baselines, critic).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from remax_ray.algo import ESTIMATORS
from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.learner import learner as learner_module
from remax_ray.learner.learner import Learner

from helpers import toy_rollouts

SCORES, GREEDY, CLIP = [5.0, 0.0, -1.0], 3.0, 1.0  # clipped: [1, 0, -1], greedy 1
# Sample j of the one prompt has 2 + j response tokens (toy_rollouts' default lengths), so a captured
# row is identified by its token count.
_G = math.sqrt(2 / 3) + 1e-6  # GRPO's population std of [1, 0, -1], plus its eps
EXPECTED = {
    "reinforce": [1.0, 0.0, -1.0],
    "remax": [0.0, -1.0, -2.0],  # clip(s) - clip(greedy); the old clip(s - greedy) gave [1, -1, -1]
    "rloo": [1.5, 0.0, -1.5],  # clip(s) - mean of the other two; clipping after gave [1, -1, -1]
    "grpo": [1 / _G, 0.0, -1 / _G],  # clipping the z-scores of the raw scores gave [1, -0.51, -0.89]
    "ppo": [1.0, 0.0, -1.0],  # the critic's token reward at the last response token
}


@pytest.fixture(scope="module")
def tiny(tiny_model) -> str:
    return str(tiny_model)


def _per_sequence(weights: torch.Tensor, mask: torch.Tensor) -> dict[int, list[float]]:
    """{response length: the weights on its tokens} for every row."""
    return {int(m.sum()): w[m > 0].tolist() for w, m in zip(weights, mask)}


@pytest.mark.parametrize("estimator", ["reinforce", "remax", "rloo", "grpo"])
def test_outcome_estimators_clip_the_score_before_the_baseline(tiny, estimator, monkeypatch):
    seen = []
    real = learner_module.policy_gradient_loss

    def spy(logp, advantages, mask, **kw):
        seen.append(_per_sequence(advantages.detach(), mask))
        return real(logp, advantages, mask, **kw)

    monkeypatch.setattr(learner_module, "policy_gradient_loss", spy)
    algo = AlgoConfig(estimator=estimator, kl_coef=0.0, score_clip=CLIP)
    learner = Learner(tiny, LearnerConfig(micro_batch_size=3), algo, seed=0)
    learner.train_step(toy_rollouts(1, 3, scores=lambda i, g: list(SCORES), greedy_score=GREEDY))
    (rows,) = seen
    for j, want in enumerate(EXPECTED[estimator]):  # no KL: the weight is the advantage on every token
        assert rows[2 + j] == pytest.approx([want] * (2 + j), abs=1e-5), (estimator, j, rows)


def test_the_critic_estimator_clips_the_score_it_rewards(tiny, monkeypatch):
    seen = []
    real = ESTIMATORS["ppo"].fn

    def spy(rewards, values, mask, gamma, lam):
        seen.append(_per_sequence(rewards, mask))
        return real(rewards, values, mask, gamma, lam)

    # The learner reaches the token-level function through the registry entry, as for any estimator.
    monkeypatch.setitem(ESTIMATORS, "ppo", dataclasses.replace(ESTIMATORS["ppo"], fn=spy))
    algo = AlgoConfig(estimator="ppo", kl_coef=0.0, score_clip=CLIP)
    learner = Learner(tiny, LearnerConfig(micro_batch_size=3), algo, seed=0)
    learner.make_experience(toy_rollouts(1, 3, scores=lambda i, g: list(SCORES)))
    (rows,) = seen
    for j, want in enumerate(EXPECTED["ppo"]):
        assert rows[2 + j] == pytest.approx([0.0] * (1 + j) + [want]), rows  # score at the last token


def test_reward_metrics_report_the_unclipped_scores(tiny):
    algo = AlgoConfig(estimator="remax", kl_coef=0.0, score_clip=CLIP)
    learner = Learner(tiny, LearnerConfig(micro_batch_size=3), algo, seed=0)
    metrics = learner.train_step(toy_rollouts(1, 3, scores=lambda i, g: list(SCORES), greedy_score=GREEDY))
    assert metrics["reward_sample"] == pytest.approx(4 / 3) and metrics["reward_greedy"] == GREEDY
