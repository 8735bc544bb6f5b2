"""PPO's critic is held to the policy's rules: a non-finite step is skipped (and counted), dropout is
zeroed, ``trust_remote_code`` is passed only when set, gradient checkpointing and fused AdamW apply."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import transformers

from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.learner.learner import Learner

from helpers import spy_on_from_pretrained, toy_rollouts


@pytest.fixture(scope="module")
def tiny(tiny_model) -> str:
    return str(tiny_model)


def _ppo(path: str, **learner_kw) -> Learner:
    cfg = LearnerConfig(lr=1e-3, critic_lr=1e-3, micro_batch_size=4, **learner_kw)
    return Learner(path, cfg, AlgoConfig(estimator="ppo", kl_coef=0.0), seed=0)


def _rollouts():
    return toy_rollouts(2, 2, seed=1, scores=lambda i, g: [1.0, -1.0])


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _critic_weights(learner: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.critic.parameters()]


def test_a_non_finite_critic_gradient_skips_the_critic_step_only(tiny):
    learner = _ppo(tiny)
    critic, policy = _critic_weights(learner), _state(learner.policy)
    weight = next(learner.critic.backbone.parameters())
    handle = weight.register_hook(lambda g: torch.full_like(g, math.nan))  # one NaN gradient tensor
    metrics = learner.train_step(_rollouts())
    handle.remove()
    after = _critic_weights(learner)
    assert all(torch.isfinite(w).all() for w in after)
    assert all(torch.equal(a, b) for a, b in zip(critic, after))  # the step was skipped
    assert all(p.grad is None for p in learner.critic.parameters())  # ... and its gradients cleared
    assert metrics["critic_skipped_updates"] == 1.0 and metrics["skipped_updates"] == 0.0
    assert not math.isfinite(metrics["critic_grad_norm"])
    assert any(not torch.equal(policy[k], v) for k, v in _state(learner.policy).items())  # policy stepped
    metrics = learner.train_step(_rollouts())  # the next step's values (and GAE) are finite again
    assert math.isfinite(metrics["value_loss"]) and metrics["critic_skipped_updates"] == 1.0
    assert any(not torch.equal(a, b) for a, b in zip(critic, _critic_weights(learner)))  # it steps again


def test_dropout_in_the_model_config_is_zeroed_in_the_critic(tiny_model, tmp_path):
    folder = tmp_path / "dropout-model"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.5}))
    critic = _ppo(str(folder)).critic
    assert critic.backbone.config.attention_dropout == 0.0
    assert all(m.p == 0.0 for m in critic.backbone.modules() if isinstance(m, torch.nn.Dropout))
    torch.nn.init.normal_(critic.head.weight)  # the zero-initialised head would hide any noise
    batch = _ppo_batch(critic, _rollouts())
    assert critic.backbone.training
    torch.testing.assert_close(critic.values(batch), critic.values(batch), rtol=0, atol=0)


def _ppo_batch(critic, rollouts):
    from remax_ray.learner.batch import build_batch, flatten_samples

    items = flatten_samples(rollouts)
    return build_batch(items, torch.zeros(len(items)), [0], 0)


@pytest.fixture
def spy_from_pretrained(monkeypatch) -> list[tuple[str, dict]]:
    """kwargs of every AutoConfig / AutoModel / AutoModelForCausalLM.from_pretrained call."""
    return spy_on_from_pretrained(monkeypatch, [transformers.AutoConfig, transformers.AutoModel, transformers.AutoModelForCausalLM])


def test_the_critic_passes_trust_remote_code_only_when_set(tiny, spy_from_pretrained):
    _ppo(tiny)
    assert any(name == "AutoModel" for name, _ in spy_from_pretrained)  # the critic's backbone
    # Never an explicit False (transformers' own nested calls pass None, its default).
    assert all(kw.get("trust_remote_code") is None for _, kw in spy_from_pretrained), spy_from_pretrained
    spy_from_pretrained.clear()
    Learner(tiny, LearnerConfig(micro_batch_size=4), AlgoConfig(estimator="ppo"), seed=0, trust_remote_code=True)
    ours = [(name, kw) for name, kw in spy_from_pretrained if "_from_auto" not in kw]
    assert [name for name, _ in ours].count("AutoModel") == 1
    assert all(kw.get("trust_remote_code") is True for _, kw in ours), ours


def test_the_critic_honours_gradient_checkpointing_and_uses_fused_adamw(tiny):
    plain, checkpointed = _ppo(tiny), _ppo(tiny, gradient_checkpointing=True)
    assert not plain.critic.backbone.is_gradient_checkpointing
    assert checkpointed.critic.backbone.is_gradient_checkpointing
    assert plain.critic.optimizer.defaults["fused"] is True  # CPU float32: the fused kernel applies
    metrics = checkpointed.train_step(_rollouts())
    assert math.isfinite(metrics["value_loss"]) and metrics["critic_grad_norm"] > 0
