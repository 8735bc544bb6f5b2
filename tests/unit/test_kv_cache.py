"""The KV cache a generator is given (remax_ray/rollout/kv_cache.py), on hand-computed values."""

from __future__ import annotations

from types import SimpleNamespace

from remax_ray.rollout.kv_cache import kv_bytes_per_token, kv_cache_bytes, largest_call

# SmolLM2-135M: 30 layers, 9 query heads, 3 key/value heads, hidden 576 (head_dim 64).
SMOLLM2 = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576)


def test_bytes_per_token_count_keys_and_values_of_every_layer() -> None:
    assert kv_bytes_per_token(SMOLLM2, 4) == 2 * 30 * 3 * 64 * 4 == 46_080
    no_gqa = SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, hidden_size=128, head_dim=None)
    assert kv_bytes_per_token(no_gqa, 2) == 2 * 2 * 4 * 32 * 2
    explicit = SimpleNamespace(num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=1, hidden_size=64,
                               head_dim=48)  # head_dim given, not hidden / heads
    assert kv_bytes_per_token(explicit, 4) == 2 * 48 * 4
    nested = SimpleNamespace(text_config=SMOLLM2)  # multimodal configs keep the text model's inside
    assert kv_bytes_per_token(nested, 4) == 46_080


def test_cache_holds_every_sequence_in_whole_blocks() -> None:
    # The default run: 64 sequences (an evaluation call) of up to 64 + 24 = 88 tokens: one 128-token
    # block each, plus vLLM's null block.
    assert kv_cache_bytes(46_080, sequences=64, max_model_len=88) == 65 * 128 * 46_080  # 0.36 GiB
    assert kv_cache_bytes(10, sequences=2, max_model_len=129, block_tokens=128) == (2 * 2 + 1) * 128 * 10
    assert kv_cache_bytes(10, sequences=0, max_model_len=1) == 2 * 128 * 10  # never smaller than one sequence


def test_largest_call_is_a_generators_share_of_a_step_or_an_evaluation() -> None:
    assert largest_call(16, 1, 32, 1, 1) == 64  # the default: evaluation, 32 x (1 + 1 greedy)
    assert largest_call(16, 4, 8, 1, 1) == 80  # the step: 16 x (4 + 1)
    assert largest_call(16, 1, 32, 1, 3) == 22  # ceil(32 / 3) = 11 prompts x 2
