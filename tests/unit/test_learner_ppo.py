"""PPO in the learner, in-process on a tiny random Llama: the experience/update seam, the critic."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from remax_ray.algo import ppo_clip_loss
from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.data.rollouts import PromptRollout
from remax_ray.learner.learner import Learner
from remax_ray.learner.response_logp import head_split

from helpers import toy_rollouts


@pytest.fixture(scope="module")
def tiny(tiny_model) -> str:
    return str(tiny_model)


def _rollouts(n_prompts: int = 4, n: int = 2, greedy: bool = False) -> list[PromptRollout]:
    return toy_rollouts(n_prompts, n, seed=1, response_len=lambda i, j: 3 + j + i % 2,
                        scores=lambda i, g: [float((i + j) % 3) - 1.0 for j in range(n)],
                        greedy=[5] if greedy else None, greedy_score=0.0)


def _ppo(tiny, **algo_kw) -> Learner:
    algo = dataclasses.replace(AlgoConfig(estimator="ppo", kl_coef=0.05), **algo_kw)
    return Learner(tiny, LearnerConfig(lr=1e-3, critic_lr=1e-3, micro_batch_size=4), algo, seed=0)


def _surrogate(learner: Learner, experience) -> float:
    """The clipped surrogate of the recorded experience under the learner's current policy."""
    total = 0.0
    with torch.no_grad():
        for me in experience.micro:
            logp = learner._logp(learner.policy, me.batch)
            loss, _ = ppo_clip_loss(logp, me.old_logp, me.advantages, me.batch.mask, 0.2,
                                    num_tokens=experience.num_tokens)
            total += loss.item()
    return total


def test_experience_stage_records_old_logprobs_and_values_only_for_ppo(tiny):
    ppo = _ppo(tiny)
    exp = ppo.make_experience(_rollouts())
    assert all(me.old_logp is not None and me.old_values is not None and me.advantages is not None
               for me in exp.micro)
    # Before any update the recorded old log-probs are the reference's (same initial weights).
    torch.testing.assert_close(exp.micro[0].old_logp * exp.micro[0].batch.mask,
                               exp.micro[0].ref_logp * exp.micro[0].batch.mask)
    remax = Learner(tiny, LearnerConfig(micro_batch_size=4), AlgoConfig(), seed=0)
    exp = remax.make_experience(_rollouts(greedy=True))
    assert all(me.old_logp is None and me.old_values is None and me.advantages is None for me in exp.micro)
    assert remax.critic is None


def _count_policy_forwards(learner: Learner, rollouts) -> int:
    """Passes through the policy's backbone (the learner calls it, then the head on the response
    positions); the one-time head-split probe runs first so that it is not counted."""
    head_split(learner.policy, learner._autocast)
    calls = []
    handle = learner.policy.base_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        learner.train_step(rollouts)
    finally:
        handle.remove()
    return len(calls)


def test_remax_skips_the_old_logprob_pass_that_ppo_pays_for(tiny):
    remax = Learner(tiny, LearnerConfig(micro_batch_size=4), AlgoConfig(), seed=0)
    assert _count_policy_forwards(remax, _rollouts(greedy=True)) == 2  # 8 sequences: 2 micro-batches
    assert _count_policy_forwards(_ppo(tiny), _rollouts()) == 4  # + the no-grad old-log-prob pass


def test_a_ppo_update_lowers_its_own_surrogate_loss(tiny):
    learner = _ppo(tiny)
    exp = learner.make_experience(_rollouts())
    before = _surrogate(learner, exp)
    metrics = learner.update(exp)
    after = _surrogate(learner, exp)
    assert metrics["optimizer_steps"] == 1 and metrics["grad_norm"] > 0
    assert after < before - 1e-4, (before, after)


def test_epochs_and_mini_batches_take_one_optimizer_step_each(tiny):
    algo = dataclasses.replace(AlgoConfig(estimator="ppo"), epochs=2)
    learner = Learner(tiny, LearnerConfig(micro_batch_size=2, mini_batch_size=4), algo, seed=0)
    metrics = learner.train_step(_rollouts())  # 8 sequences = 2 mini-batches, 2 epochs
    assert metrics["optimizer_steps"] == 4 and 0.0 <= metrics["clip_frac"] <= 1.0


def test_the_value_loss_falls_over_a_few_updates_on_a_fixed_batch(tiny):
    algo = AlgoConfig(estimator="ppo", kl_coef=0.0, gamma=1.0, lam=1.0)  # targets = the scores, fixed
    learner = Learner(tiny, LearnerConfig(lr=1e-4, critic_lr=2e-3, micro_batch_size=4), algo, seed=0)
    rollouts = _rollouts()
    losses = [learner.train_step(rollouts)["value_loss"] for _ in range(8)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_critic_holds_its_own_memory(tiny):
    ppo = _ppo(tiny)
    policy_ptrs = {p.data_ptr() for p in ppo.policy.parameters()}
    critic_ptrs = {p.data_ptr() for p in ppo.critic.parameters()}
    assert not policy_ptrs & critic_ptrs
    critic_params = sum(p.numel() for p in ppo.critic.backbone.parameters())
    policy_params = sum(p.numel() for p in ppo.policy.model.parameters())
    assert critic_params == policy_params  # the policy's architecture and size, minus the LM head
    # Exact training-state bytes: PPO adds a second trainable model with its own AdamW state.
    remax = Learner(tiny, LearnerConfig(micro_batch_size=4), AlgoConfig(), seed=0)
    m_ppo, m_remax = ppo.train_step(_rollouts()), remax.train_step(_rollouts(greedy=True))
    params = list(remax.policy.parameters())
    policy_bytes = sum(p.numel() * 4 for p in params)
    # policy x (param, grad, Adam m, Adam v) + the reference, + AdamW's 4-byte step count per tensor
    assert m_remax["learner_state_bytes"] == 5 * policy_bytes + 4 * len(params)
    assert m_ppo["learner_state_bytes"] > 1.5 * m_remax["learner_state_bytes"]
