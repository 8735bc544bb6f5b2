"""The learner's LM head at the response positions only (``learner/response_logp.py``) against the
full-logits path it replaced, on tiny random Llamas with tied and untied heads; and the reference
forward that ``algo.kl_coef`` 0 skips."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import types

import pytest
import torch

from remax_ray.algo import token_logprobs
from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.data.rollouts import PromptRollout
from remax_ray.learner.batch import build_batch, flatten_samples
from remax_ray.learner.learner import Learner
from remax_ray.learner.response_logp import ResponseLogits, head_split, response_logprobs

from helpers import policy_gradient, reference_entropy, toy_rollouts

ATOL = 1e-5


def _assert_grads_close(new: torch.Tensor, old: torch.Tensor, msg: str = "") -> None:
    """Within ATOL of each other, ATOL taken relative to the gradient's largest entry when that is
    above 1: float32 rounding scales with the summands (PPO's whitened advantages on the untied tiny
    model give entries of several hundred), and the paths differ in GEMM shapes and summation order."""
    scale = max(1.0, old.abs().max().item())
    torch.testing.assert_close(new, old, atol=ATOL * scale, rtol=0, msg=msg or None)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The tiny models' ops are too small to gain from a second thread, and on a shared machine a
    2-thread OpenMP team stalls whenever a neighbour holds the other core (these tests took 25-55 s
    each that way, 0.5 s on one thread). Restored afterwards for the rest of the session."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["tied", "untied"])
def model(request, tiny_model, tiny_model_untied) -> tuple[str, bool]:
    """(path, whether its LM head is the input embedding matrix)"""
    tied = request.param == "tied"
    return str(tiny_model if tied else tiny_model_untied), tied


def _rollouts(eos: int, n: int = 1, seed: int = 0) -> list[PromptRollout]:
    """Prompts of 3..8 tokens, responses of 2..7 tokens, some ending on EOS (masked tail)."""
    return toy_rollouts(6, n, seed=seed, response_len=lambda i, j: 2 + (i + 2 * j) % 6, greedy=[5],
                        greedy_score=0.1, eos=eos, finish="stop")


def _full_logits_score(learner: Learner, model, mb, entropy: bool = False):
    """The pre-change path: logits at every position, log-softmax and entropy over all of them."""
    logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False).logits[:, :-1]
    logp = token_logprobs(logits, mb.targets, learner.temperature)
    return logp, reference_entropy(logits.detach(), learner.temperature) if entropy else None


def _prompt_order_micro_batches(learner: Learner, items):
    size = learner.cfg.micro_batch_size
    return [list(range(lo, min(lo + size, len(items)))) for lo in range(0, len(items), size)]


def _old_path(learner: Learner) -> Learner:
    learner._score = types.MethodType(_full_logits_score, learner)
    learner._micro_batch_rows = types.MethodType(_prompt_order_micro_batches, learner)
    return learner


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_entropy_and_gradient_match_the_full_logits_path(model, temperature):
    model_path, tied = model
    learner = Learner(model_path, LearnerConfig(), AlgoConfig(), temperature=temperature, seed=0)
    policy = learner.policy
    assert (policy.get_output_embeddings().weight is policy.get_input_embeddings().weight) == tied
    assert head_split(policy, learner._autocast) is not None  # the fast path is the one under test
    items = flatten_samples(_rollouts(learner.eos_ids[0]))
    mb = build_batch(items, torch.zeros(len(items)), learner.eos_ids, learner.pad_id)
    mask = mb.mask
    assert 0 < mask.sum() < mask.numel()  # prompt columns and post-EOS columns are off the mask
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(1))  # per-token loss weights

    new_logp, new_entropy = learner._score(policy, mb, entropy=True)
    (new_logp * mask * weights).sum().backward()
    new_grads = _grads(policy)
    old_logp, old_entropy = _full_logits_score(learner, policy, mb, entropy=True)
    (old_logp * mask * weights).sum().backward()
    old_grads = _grads(policy)

    assert torch.equal(new_logp.detach() * (1 - mask), torch.zeros_like(mask))  # nothing computed off the mask
    torch.testing.assert_close(new_logp.detach() * mask, old_logp.detach() * mask, atol=ATOL, rtol=0)
    torch.testing.assert_close(new_entropy * mask, old_entropy * mask, atol=ATOL, rtol=0)
    assert set(new_grads) == set(old_grads)
    for name in new_grads:  # with a tied head the embedding gets both its input and head gradients
        _assert_grads_close(new_grads[name], old_grads[name], name)
    assert all(g.abs().sum() > 0 for g in new_grads.values())  # every weight, the head's included


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("estimator,placement,kl_kind", [("remax", "reward", "k1"), ("ppo", "loss", "k3")])
def test_the_learner_update_matches_the_old_path(model, temperature, estimator, placement, kl_kind):
    """Policy gradient and step metrics of the new path (response-only head, length-sorted
    micro-batches) against the old one (full logits, prompt order), with a reference that differs
    from the policy so the KL term is not zero."""
    algo = AlgoConfig(estimator=estimator, kl_coef=0.2, kl_placement=placement, kl_estimator=kl_kind)
    model_path, _ = model
    cfg = LearnerConfig(micro_batch_size=2, lr=1e-3)
    new, old = (Learner(model_path, cfg, algo, temperature=temperature, seed=0) for _ in range(2))
    _old_path(old)
    for learner in (new, old):
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in learner.reference.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=g))
    rollouts = _rollouts(new.eos_ids[0], n=2)
    _assert_grads_close(policy_gradient(new, rollouts), policy_gradient(old, rollouts))
    m_new, m_old = new.train_step(rollouts), old.train_step(rollouts)
    keys = ["loss", "grad_norm", "kl", "entropy"] + (["value_loss", "clip_frac"] if estimator == "ppo" else [])
    for key in keys:
        assert m_new[key] == pytest.approx(m_old[key], abs=ATOL, rel=1e-4), key
    assert m_new["kl"] != 0.0 and m_new["kl_measured"] == 1.0


def _count_forwards(module: torch.nn.Module, fn) -> int:
    calls = []
    handle = module.register_forward_hook(lambda *a: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls)


@pytest.mark.parametrize("estimator", ["remax", "ppo"])
def test_kl_coef_zero_skips_the_reference_forward_and_changes_nothing_else(tiny_model, estimator, monkeypatch):
    algo = AlgoConfig(estimator=estimator, kl_coef=0.0)
    skipping, measuring = (Learner(str(tiny_model), LearnerConfig(micro_batch_size=4), algo, seed=0)
                           for _ in range(2))
    rollouts = _rollouts(skipping.eos_ids[0], n=2)  # 12 sequences: 3 micro-batches
    ref = skipping.reference
    assert _count_forwards(ref.base_model, lambda: skipping.make_experience(rollouts)) == 0
    assert all(me.ref_logp is None for me in skipping.make_experience(rollouts).micro)
    grad_skipping = policy_gradient(skipping, rollouts)
    head_split(measuring.reference, measuring._autocast)  # its one-time probe, not counted below
    with monkeypatch.context() as m:  # the same learner made to run the reference forward anyway
        m.setattr(Learner, "measures_kl", property(lambda self: True))
        assert _count_forwards(measuring.reference.base_model, lambda: measuring.make_experience(rollouts)) == 3
        grad_measuring = policy_gradient(measuring, rollouts)
        m_measuring = measuring.train_step(rollouts)
    # With kl_coef 0 the reference's log-probs never enter a loss or reward: identical to the bit.
    assert torch.equal(grad_skipping, grad_measuring)
    m_skipping = skipping.train_step(rollouts)
    assert m_skipping["kl"] == 0.0 and m_skipping["kl_measured"] == 0.0 and m_measuring["kl_measured"] == 1.0
    assert m_skipping["loss"] == m_measuring["loss"] and m_skipping["grad_norm"] == m_measuring["grad_norm"]


def test_a_head_with_soft_capping_falls_back_to_the_full_forward(caplog):
    """Gemma-2 soft-caps its logits after the head: the probe refuses the split, and the log-probs
    stay those of the model's own logits."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    model = Gemma2ForCausalLM(Gemma2Config(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1,
        num_key_value_heads=1, head_dim=32, final_logit_softcapping=5.0, pad_token_id=0))
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0.0, 1.0)  # logits large enough for the cap to bite
    with caplog.at_level(logging.WARNING, logger="remax_ray.learner.response_logp"):
        assert head_split(model, contextlib.nullcontext) is None
    assert "not head(backbone(x))" in caplog.text
    items = [([3, 4, 5], [6, 7, 8], None), ([9, 10], [11, 1, 12, 13], None)]
    mb = build_batch(items, torch.zeros(2), [1], 0)
    logp, entropy = response_logprobs(ResponseLogits(model, contextlib.nullcontext), mb, 0.7, torch.device("cpu"),
                                      contextlib.nullcontext, True)
    fake = types.SimpleNamespace(temperature=0.7)
    old_logp, old_entropy = _full_logits_score(fake, model, mb, entropy=True)
    torch.testing.assert_close(logp * mb.mask, old_logp * mb.mask, atol=ATOL, rtol=0)
    torch.testing.assert_close(entropy * mb.mask, old_entropy * mb.mask, atol=ATOL, rtol=0)
    # What a bare head (the soft-capping dropped) would have given instead: clearly different.
    with torch.no_grad():
        bare = model.lm_head(model.model(input_ids=mb.input_ids).last_hidden_state)[:, :-1]
    bare_logp = token_logprobs(bare, mb.targets, 0.7)
    assert ((bare_logp - old_logp).abs() * mb.mask).max() > 1e-2


def test_the_head_split_of_a_llama_is_its_decoder_and_lm_head(tiny_model):
    learner = Learner(str(tiny_model), LearnerConfig(), AlgoConfig(), seed=0)
    backbone, head = head_split(learner.policy, learner._autocast)
    assert backbone is learner.policy.model and head is learner.policy.lm_head
    cfg = dataclasses.replace(LearnerConfig(), gradient_checkpointing=True)
    checkpointed = Learner(str(tiny_model), cfg, AlgoConfig(), seed=0)
    items = flatten_samples(_rollouts(learner.eos_ids[0]))
    mb = build_batch(items, torch.zeros(len(items)), learner.eos_ids, learner.pad_id)
    a, _ = learner._score(learner.policy, mb)
    b, _ = checkpointed._score(checkpointed.policy, mb)  # activation checkpointing lives in the backbone
    b.sum().backward()
    torch.testing.assert_close(a.detach(), b.detach(), atol=ATOL, rtol=0)
    assert all(p.grad is not None for p in checkpointed.policy.parameters())
