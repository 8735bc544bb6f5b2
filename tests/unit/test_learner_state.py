"""The learner's share of a checkpoint: a resumed learner continues bit-identically; a non-finite
gradient skips the optimizer step; dropout is off so log-probs match a sampler's."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.data.rollouts import PromptRollout
from remax_ray.learner.learner import Learner

from helpers import sequence_logprobs, toy_rollouts


@pytest.fixture(scope="module")
def tiny(tiny_model) -> str:
    return str(tiny_model)


def _rollouts(seed: int) -> list[PromptRollout]:
    return toy_rollouts(4, 2, seed=seed, response_len=lambda i, j: 3 + j, greedy_score=0.1)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("estimator", ["remax", "ppo"])
def test_a_resumed_learner_continues_bit_identically(tiny, tmp_path, estimator):
    algo = AlgoConfig(estimator=estimator, kl_coef=0.05)
    cfg = dataclasses.replace(LearnerConfig(), lr=1e-2, warmup_steps=3)
    straight = Learner(tiny, cfg, algo, seed=0)
    for step in range(2):
        straight.train_step(_rollouts(step))
    folder = straight.save(tmp_path / "step-000002", json.dumps({"step": 2}))
    resumed = Learner(str(folder), cfg, algo, seed=0, reference_path=tiny, resume_from=str(folder))
    # The KL anchor is the original model, not the checkpoint the policy starts from.
    original = Learner(tiny, cfg, algo, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(resumed.reference.parameters(), original.policy.parameters()))
    for step in range(2, 4):
        a, b = straight.train_step(_rollouts(step)), resumed.train_step(_rollouts(step))
        assert a["loss"] == b["loss"] and a["lr"] == b["lr"] and a["kl"] == b["kl"]
    ours, theirs = _params(straight.policy), _params(resumed.policy)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    if estimator == "ppo":
        assert all(torch.equal(x, y) for x, y in zip(straight.critic.parameters(), resumed.critic.parameters()))


def test_a_checkpoint_before_the_first_update_changes_neither_run(tiny, tmp_path):
    """Saving reads the optimizer's state dict, which torch fills for an optimizer that has taken
    no step by stepping it with zero gradients (AdamW's step count 1): the first real step would then
    be ~0.74x a fresh one's, in the run that saved and in the run that resumes."""
    algo, cfg = AlgoConfig(kl_coef=0.05), dataclasses.replace(LearnerConfig(), lr=1e-2)
    plain = Learner(tiny, cfg, algo, seed=0)
    saving = Learner(tiny, cfg, algo, seed=0)
    folder = saving.save(tmp_path / "step-000000", json.dumps({"step": 0}))
    resumed = Learner(str(folder), cfg, algo, seed=0, reference_path=tiny, resume_from=str(folder))
    for learner in (plain, saving, resumed):
        learner.train_step(_rollouts(0))
    want = _params(plain.policy)
    for learner in (saving, resumed):
        got = _params(learner.policy)
        assert all(torch.equal(want[k], got[k]) for k in want)


def _single_learner_format(learner: Learner, folder) -> None:
    """Rewrite a checkpoint's learner state as remax-ray wrote it before learner ranks: whole
    optimizer state dicts and PPO's critic inside trainer_state.pt, no sharded optimizer folder."""
    import shutil

    from remax_ray.learner.state import OPTIMIZER_DIR

    state = torch.load(folder / "trainer_state.pt", weights_only=True)
    state = {k: v for k, v in state.items() if k not in ("critic_skipped_updates", "fresh_optimizers")}
    state["optimizer"] = learner.optimizer.state_dict()
    if learner.critic is not None:
        state["critic"] = {"backbone": learner.critic.backbone.state_dict(),
                           "head": learner.critic.head.state_dict(),
                           "optimizer": learner.critic.optimizer.state_dict()}
    torch.save(state, folder / "trainer_state.pt")
    shutil.rmtree(folder / OPTIMIZER_DIR)


def test_a_single_learner_format_ppo_checkpoint_resumes_with_its_critic(tiny, tmp_path):
    algo = AlgoConfig(estimator="ppo", kl_coef=0.05)
    cfg = dataclasses.replace(LearnerConfig(), lr=1e-2)
    straight = Learner(tiny, cfg, algo, seed=0)
    straight.train_step(_rollouts(0))
    assert straight.critic.head.weight.abs().sum() > 0  # a trained critic, not its zero start
    folder = straight.save(tmp_path / "step-000001", json.dumps({"step": 1}))
    _single_learner_format(straight, folder)
    resumed = Learner(str(folder), cfg, algo, seed=0, reference_path=tiny, resume_from=str(folder))
    assert all(torch.equal(x, y) for x, y in zip(straight.critic.parameters(), resumed.critic.parameters()))
    a, b = straight.train_step(_rollouts(1)), resumed.train_step(_rollouts(1))
    assert a["loss"] == b["loss"] and a["value_loss"] == b["value_loss"]
    # More ranks cannot take whole optimizer state dicts: refused, naming the way forward.
    from remax_ray.learner.state import restore_learner_state

    resumed.world_size = 2
    with pytest.raises(ValueError, match="learner.num_workers=1"):
        restore_learner_state(resumed, folder)


def test_a_non_finite_gradient_skips_the_optimizer_step(tiny):
    learner = Learner(tiny, dataclasses.replace(LearnerConfig(), lr=1e-2), AlgoConfig(kl_coef=0.0), seed=0)
    before = _params(learner.policy)
    weight = learner.policy.model.layers[0].mlp.up_proj.weight
    hook = weight.register_hook(lambda g: g * float("nan"))
    out = learner.train_step(_rollouts(0))
    assert out["skipped_updates"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in _params(learner.policy).items())
    assert all(p.grad is None for p in learner.policy.parameters())  # zeroed, nothing carried over
    assert not learner.optimizer.state  # Adam's moments never saw the NaN
    hook.remove()
    out = learner.train_step(_rollouts(1))  # the next step trains normally
    assert out["skipped_updates"] == 1.0 and torch.isfinite(torch.tensor(out["grad_norm"]))
    after = _params(learner.policy)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_dropout_is_off_in_the_learner(tmp_path):
    """A model shipped with dropout: the learner's log-probs (training mode, where dropout would
    apply) are deterministic and equal the model's eval-mode log-probs, i.e. what vLLM samples with."""
    from transformers import AutoModelForCausalLM

    from remax_ray.assets.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path / "dropout")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.5}))
    learner = Learner(str(folder), LearnerConfig(), AlgoConfig(), seed=0)
    assert learner.policy.training
    seq = [[3, 17, 42, 99, 7, 8, 250, 11]]
    first, second = sequence_logprobs(learner.policy, seq), sequence_logprobs(learner.policy, seq)
    assert first == second
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert plain.config.attention_dropout == 0.5
    plain.train()  # the same model with its dropout active gives other (noisy) log-probs
    ids = torch.tensor(seq)
    with torch.no_grad():
        noisy = torch.log_softmax(plain(input_ids=ids).logits[:, :-1], -1).gather(-1, ids[:, 1:, None])
    assert not torch.allclose(noisy[0, :, 0], torch.tensor(first[0]), atol=1e-4)
    plain.eval()
    with torch.no_grad():
        clean = torch.log_softmax(plain(input_ids=ids).logits[:, :-1], -1).gather(-1, ids[:, 1:, None])
    assert torch.allclose(clean[0, :, 0], torch.tensor(first[0]), atol=1e-5)


def test_trust_remote_code_reaches_transformers_only_when_set(tmp_path):
    """A model folder whose architecture is Python code shipped inside it (``auto_map``): refused
    without model.trust_remote_code, loaded (policy, reference and tokenizer) with it."""
    from remax_ray.assets.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path / "custom")
    (folder / "custom_llama.py").write_text(
        "from transformers import LlamaConfig, LlamaForCausalLM\n\n\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'remax_custom_llama'\n\n\n"
        "class CustomForCausalLM(LlamaForCausalLM):\n    config_class = CustomConfig\n")
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": "remax_custom_llama", "architectures": ["CustomForCausalLM"],
               "auto_map": {"AutoConfig": "custom_llama.CustomConfig",
                            "AutoModelForCausalLM": "custom_llama.CustomForCausalLM"}}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code"):
        Learner(str(folder), LearnerConfig(), AlgoConfig(), seed=0)
    learner = Learner(str(folder), LearnerConfig(), AlgoConfig(), seed=0, trust_remote_code=True)
    assert type(learner.policy).__name__ == "CustomForCausalLM"
    assert type(learner.reference).__name__ == "CustomForCausalLM"


def test_overlap_weights_the_returns_by_truncated_importance_ratios(tiny):
    """With an importance cap (rollout.overlap) and generator log-probs one policy behind, the
    learner reports the ratio statistics, and the update differs from the unweighted one."""
    cfg = dataclasses.replace(LearnerConfig(), lr=1e-2, max_grad_norm=0.0)
    plain = Learner(tiny, cfg, AlgoConfig(kl_coef=0.0), seed=0)
    weighted = Learner(tiny, cfg, AlgoConfig(kl_coef=0.0), seed=0, importance_cap=2.0)
    rollouts = _rollouts(0)
    current = sequence_logprobs(plain.policy, [r.prompt_ids + c.token_ids for r in rollouts for c in r.samples])
    for k, c in enumerate(c for r in rollouts for c in r.samples):  # a stale sampler: ratios vary around 1
        c.logprobs = [lp + (0.9 if (k + i) % 2 else -0.9) for i, lp in enumerate(current[k][-len(c.token_ids):])]
    a, b = plain.train_step(rollouts), weighted.train_step(rollouts)
    assert "is_ratio_mean" not in a
    assert b["is_ratio_mean"] > 1.0 and 0.0 < b["is_clip_frac"] < 1.0 and b["is_ratio_max"] > 2.0
    assert a["loss"] != b["loss"]


def test_a_padding_micro_batch_adds_nothing_to_the_importance_statistics(tiny):
    """A rank with fewer micro-batches runs empty ones (no token on the mask); their ratios are no
    sample's, and a ratio of 1 from them would floor is_ratio_max at 1 on every rank."""
    from remax_ray.learner.experience import MicroExperience
    from remax_ray.learner.minibatch import padding_like

    learner = Learner(tiny, LearnerConfig(), AlgoConfig(kl_coef=0.0), seed=0, importance_cap=2.0)
    pad = padding_like(MicroExperience(None, ref_logp=None), learner.pad_id, learner.eos_ids)
    pad.batch.has_gen_logprobs = True
    logp = torch.zeros_like(pad.batch.mask, requires_grad=True)
    from remax_ray.learner.totals import UpdateTotals

    totals = UpdateTotals()
    agg = dict(agg="token-mean", num_tokens=1.0, num_seqs=1.0)
    loss = learner._policy_loss(pad, logp, None, pad.batch.mask, agg, totals)
    assert loss.item() == 0.0
    assert totals.is_tokens == 0 and totals.is_ratio_max == 0 and totals.importance_metrics() == {}
