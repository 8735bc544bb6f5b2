"""Tiny random causal LMs of several architecture families, for the model-coverage tests.

Each is built locally from a transformers config (no hub), with the tokenizer of ``builtin:tiny``
(a small byte-level BPE), head_dim 64 (vLLM-CPU needs >= 32), two layers and a few hundred KB of
weights. What each family adds to the plain Llama is named next to it: the layouts the weight sync
must route (fused projections, biases, norms of its own, another naming scheme, scaled embeddings).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS = 64, 2, 1, 128, 256


def _llama_like(config_class: str, **extra: Any) -> Callable[[int], Any]:
    def build(vocab: int) -> Any:
        import transformers

        return getattr(transformers, config_class)(
            vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
            num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
            max_position_embeddings=POSITIONS, **extra)
    return build


def _gpt2(vocab: int) -> Any:
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS)


def _gpt_neox(vocab: int) -> Any:
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         max_position_embeddings=POSITIONS, tie_word_embeddings=False)


TINY_ARCHITECTURES: dict[str, tuple[Callable[[int], Any], str]] = {
    "llama": (_llama_like("LlamaConfig", tie_word_embeddings=True), "tied embeddings"),
    "llama-untied": (_llama_like("LlamaConfig", tie_word_embeddings=False), "a separate LM head"),
    "qwen2": (_llama_like("Qwen2Config", tie_word_embeddings=False), "q/k/v biases"),
    "qwen3": (_llama_like("Qwen3Config", head_dim=HIDDEN // HEADS, tie_word_embeddings=True),
              "q/k RMSNorm per head"),
    "mistral": (_llama_like("MistralConfig", tie_word_embeddings=False), "Llama layout, sliding window"),
    "phi3": (_llama_like("Phi3Config", tie_word_embeddings=False, pad_token_id=0),
             "q/k/v and gate/up already fused in the checkpoint"),
    "gemma2": (_llama_like("Gemma2Config", head_dim=HIDDEN // HEADS, tie_word_embeddings=True),
               "scaled embeddings, logit soft-capping, four norms per layer"),
    "olmo2": (_llama_like("Olmo2Config", tie_word_embeddings=False), "norms after attention and MLP, q/k norm"),
    "granite": (_llama_like("GraniteConfig", tie_word_embeddings=True, embedding_multiplier=2.0,
                            logits_scaling=2.0, residual_multiplier=0.5, attention_multiplier=0.125),
                "embedding, residual, attention and logit multipliers"),
    "gpt2": (_gpt2, "transformer.h.N naming, Conv1D (transposed) fused c_attn, learned positions"),
    "gpt-neox": (_gpt_neox, "gpt_neox.layers.N naming, fused query_key_value, parallel residual"),
}


def build_tiny_arch(family: str, out: str | Path, tokenizer_from: str | Path, seed: int = 0) -> Path:
    """A random ``family`` model (a key of :data:`TINY_ARCHITECTURES`) in ``out``, with the tokenizer
    files of ``tokenizer_from`` (a ``build_tiny_model`` folder)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    for f in Path(tokenizer_from).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, out / f.name)
    config = TINY_ARCHITECTURES[family][0](len(tokenizer))
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        setattr(config, key, getattr(tokenizer, key))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # logits large enough that a sync's change shows in the log-probs
        model.get_output_embeddings().weight.normal_(0.0, 0.05 if config.tie_word_embeddings else 0.3)
    model.save_pretrained(out, safe_serialization=True)
    model.generation_config.save_pretrained(out)
    return out
