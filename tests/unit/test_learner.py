"""The Learner in-process on a tiny random Llama (no Ray, no vLLM)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.data.rollouts import PromptRollout
from remax_ray.learner.learner import Learner

from helpers import policy_gradient, sequence_logprobs, toy_rollouts


@pytest.fixture(scope="module")
def tiny(tiny_model) -> str:
    return str(tiny_model)


def _rollouts(n_prompts: int = 4, n: int = 2, same_scores: bool = False) -> list[PromptRollout]:
    scores = (lambda i, g: [0.5] * n) if same_scores else (lambda i, g: [float(i - j) for j in range(n)])
    return toy_rollouts(n_prompts, n, scores=scores, greedy_score=0.5 if same_scores else 0.25)


def _learner(tiny, **learner_kw) -> Learner:
    cfg = dataclasses.replace(LearnerConfig(), lr=1e-2, **learner_kw)
    return Learner(tiny, cfg, AlgoConfig(kl_coef=0.1), seed=0)


def _params(learner: Learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.policy.named_parameters()}


def test_micro_batching_gives_the_full_batch_update(tiny):
    """Losses are normalised by whole-batch counts, so accumulation over 4 micro-batches == 1 batch."""
    small, big = _learner(tiny, micro_batch_size=2), _learner(tiny, micro_batch_size=8)
    # Plain SGD makes the update proportional to the gradient; Adam's first step is ~lr*sign(g),
    # which would amplify float noise in near-zero gradient entries.
    for learner in (small, big):
        learner.optimizer = torch.optim.SGD(learner.policy.parameters(), lr=1.0)
        learner.scheduler = torch.optim.lr_scheduler.LambdaLR(learner.optimizer, lambda s: 1.0)
    m_small, m_big = small.train_step(_rollouts()), big.train_step(_rollouts())
    assert m_small["loss"] == pytest.approx(m_big["loss"], abs=1e-5)
    assert m_small["grad_norm"] == pytest.approx(m_big["grad_norm"], rel=1e-4)
    p_small, p_big = _params(small), _params(big)
    assert all(torch.allclose(p_small[k], p_big[k], atol=1e-5) for k in p_small)


def test_zero_advantage_and_no_kl_leaves_the_policy_unchanged(tiny):
    """r(sample) == r(greedy) everywhere: the ReMax gradient is exactly zero."""
    learner = Learner(tiny, LearnerConfig(lr=1e-2), AlgoConfig(kl_coef=0.0), seed=0)
    before = _params(learner)
    metrics = learner.train_step(_rollouts(same_scores=True))
    assert metrics["adv_mean"] == 0.0 and metrics["grad_norm"] == 0.0
    after = _params(learner)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_update_raises_logprob_of_positive_advantage_samples(tiny):
    learner = Learner(tiny, LearnerConfig(lr=1e-2), AlgoConfig(kl_coef=0.0), seed=0)
    rollouts = _rollouts(n_prompts=1, n=2)  # scores [0, -1] against greedy 0.25: adv [-0.25, -1.25]
    rollouts[0].sample_scores = [1.25, -0.75]  # adv [+1, -1]
    seqs = [rollouts[0].prompt_ids + s.token_ids for s in rollouts[0].samples]
    before = [sum(lp) for lp in sequence_logprobs(learner.policy, seqs)]
    metrics = learner.train_step(rollouts)
    after = [sum(lp) for lp in sequence_logprobs(learner.policy, seqs)]
    assert metrics["score_adv_mean"] == pytest.approx(0.0) and metrics["score_adv_std"] == pytest.approx(1.0)
    assert after[0] > before[0] and after[1] < before[1]


def _reference_kl(learner: Learner, rollouts: list[PromptRollout], kind: str) -> float:
    """Token-mean KL estimate of the policy to the reference on the sampled responses, from plain
    unbatched forwards of each whole sequence (no padding, no micro-batches, full-vocabulary
    log-softmax): independent of the learner's response-position path."""
    seqs = [(r.prompt_ids + c.token_ids, len(c.token_ids)) for r in rollouts for c in r.samples]
    with torch.no_grad():
        logp = sequence_logprobs(learner.policy, [s for s, _ in seqs])
        ref = sequence_logprobs(learner.reference, [s for s, _ in seqs])
    per_token = []
    for (_, k), lp, rp in zip(seqs, logp, ref):
        for d in (a - b for a, b in zip(lp[-k:], rp[-k:])):  # log(pi / ref) of each response token
            per_token.append({"k1": d, "k2": 0.5 * d * d, "k3": math.exp(-d) + d - 1.0}[kind])
    return sum(per_token) / len(per_token)


@pytest.mark.parametrize("placement,kind", [("reward", "k1"), ("loss", "k3")])
def test_kl_is_zero_at_start_then_the_measured_estimate(tiny, placement, kind):
    algo = AlgoConfig(kl_coef=0.5, kl_placement=placement, kl_estimator=kind)
    learner = Learner(tiny, LearnerConfig(lr=1e-2), algo, seed=0)
    first = learner.train_step(_rollouts())
    assert first["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference before any update
    rollouts = _rollouts()
    want = _reference_kl(learner, rollouts, kind)  # the policy the second step measures, before it steps
    assert abs(want) > 1e-4  # the first update moved the policy away from the reference
    second = learner.train_step(rollouts)
    assert second["kl"] == pytest.approx(want, rel=1e-3, abs=1e-7)
    assert all(math.isfinite(v) for v in second.values())


def test_importance_correction_refuses_samples_without_behaviour_logprobs(tiny):
    """rollout.overlap: a sample without the generator's log-probs cannot be importance-weighted;
    training it as if on-policy (the whole batch then went uncorrected) is refused, naming it."""
    learner = Learner(tiny, LearnerConfig(lr=1e-2), AlgoConfig(kl_coef=0.0), seed=0, importance_cap=2.0)
    rollouts = _rollouts()
    for r in rollouts:
        for c in r.samples:
            c.logprobs = [-1.0] * len(c.token_ids)
    rollouts[2].samples[1].logprobs = None
    before = _params(learner)
    with pytest.raises(ValueError, match=r"importance.*1 of 8 sampled responses .*no log-probs"):
        learner.train_step(rollouts)
    assert all(torch.equal(before[k], v) for k, v in _params(learner).items())
    rollouts[2].samples[1].logprobs = [-1.0]  # shorter than its response: as unusable
    with pytest.raises(ValueError, match="1 of 8 sampled responses"):
        learner.train_step(rollouts)


def test_checkpoint_is_an_hf_folder_that_transformers_loads(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    learner = _learner(tiny)
    learner.train_step(_rollouts())
    folder = learner.save(tmp_path / "ckpt", '{"step": 1}', "run:\n  steps: 1\n")
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    AutoTokenizer.from_pretrained(folder)
    ours = _params(learner)
    assert all(torch.equal(ours[k], v) for k, v in reloaded.named_parameters())
    state = torch.load(folder / "trainer_state.pt", weights_only=True)
    assert state["learner_steps"] == 1 and "scheduler" in state
    # AdamW's state: a torch.distributed.checkpoint folder keyed by parameter name (any K resumes it).
    assert (folder / "optimizer" / ".metadata").is_file() and "optimizer" not in state
    assert json.loads((folder / "run_state.json").read_text()) == {"step": 1}
    assert (folder / "config.yaml").read_text() == "run:\n  steps: 1\n"
    assert (tmp_path / "latest").read_text().strip() == "ckpt"
    assert not list(tmp_path.glob(".tmp-*"))  # no temp folder left behind
    assert (folder.stat().st_mode & 0o777) == 0o755  # shareable, unlike mkdtemp's owner-only default


def test_policy_gradient_is_the_update_direction_and_leaves_the_policy_alone(tiny):
    learner = Learner(tiny, LearnerConfig(lr=1e-2), AlgoConfig(kl_coef=0.0), seed=0)
    learner.optimizer = torch.optim.SGD(learner.policy.parameters(), lr=1.0)
    learner.scheduler = torch.optim.lr_scheduler.LambdaLR(learner.optimizer, lambda s: 1.0)
    before = _params(learner)
    grad = policy_gradient(learner, _rollouts())
    assert all(torch.equal(before[k], v) for k, v in _params(learner).items())  # nothing stepped
    assert all(p.grad is None for p in learner.policy.parameters())
    learner.cfg = dataclasses.replace(learner.cfg, max_grad_norm=0.0)
    learner.train_step(_rollouts())  # plain SGD, lr 1, no clipping: params move by -grad exactly
    moved = torch.cat([(before[k] - v).reshape(-1) for k, v in _params(learner).items()])
    torch.testing.assert_close(moved, grad, atol=1e-5, rtol=1e-4)
