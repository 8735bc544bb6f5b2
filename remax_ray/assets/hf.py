"""Hugging Face folder helpers shared by the driver's preflight, the generator, the reward scorer and
the learner: what is passed to ``from_pretrained`` / ``vllm.LLM``, and which folders are refused.

Nothing here imports transformers at module level, so the config-only paths stay light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from remax_ray.config import ConfigError

__all__ = ["PICKLE_SUFFIXES", "TOKENIZER_FILES", "check_model_folder", "hf_kwargs", "load_tokenizer",
           "portable_tokenizer_config"]

# One of these makes a folder loadable by AutoTokenizer without the hub: a fast tokenizer's JSON,
# a sentencepiece model, or a BPE/WordPiece vocabulary. (tokenizer_config.json alone is not enough.)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                   "vocab.json", "vocab.txt")
# Weight files that torch.load unpickles. transformers and vLLM only read them when no safetensors
# file is present, so a folder is "pickle-only" exactly when it has these and no *.safetensors.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def hf_kwargs(trust_remote_code: bool) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained`` and ``vllm.LLM``.

    ``trust_remote_code`` appears only when it is set: an explicit ``False`` is the libraries'
    default anyway, and leaving the key out keeps every call identical to one without this option,
    so the flag cannot be turned on by a library whose default changes.
    """
    return {"trust_remote_code": True} if trust_remote_code else {}


def _weight_files(folder: Path) -> tuple[list[str], list[str]]:
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    safe = [n for n in names if n.endswith(".safetensors")]
    # training_args.bin and friends are not weights; transformers' weight files start like these.
    pickle = [n for n in names if n.endswith(PICKLE_SUFFIXES)
              and n.startswith(("pytorch_model", "model", "consolidated"))]
    return safe, pickle


def check_model_folder(path: str, key: str, *, allow_pickle_weights: bool,
                       need_tokenizer: bool = True) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``path`` is a loadable HF model folder.

    Checked: the folder exists, has ``config.json``, tokenizer files (``need_tokenizer``) and
    weights, and the weights are safetensors unless ``allow_pickle_weights``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{key}: model folder {path} does not exist")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{key}: {path} is not a Hugging Face model folder (no config.json)")
    if need_tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(
            f"{key}: {path} has no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)}); "
            "save the tokenizer into the model folder (tokenizer.save_pretrained(folder))"
        )
    safe, pickle = _weight_files(folder)
    if safe:
        return
    if not pickle:
        raise ConfigError(f"{key}: {path} has no weights (no *.safetensors file)")
    if not allow_pickle_weights:
        raise ConfigError(
            f"{key}: {path} has only pickle weights ({', '.join(pickle)}). Loading a pickle file can "
            "run arbitrary code, so remax-ray needs safetensors by default: convert the folder "
            "(model.save_pretrained(folder, safe_serialization=True)), or set "
            "model.allow_pickle_weights=true if you trust where the file came from"
        )


def load_tokenizer(path: str, key: str, *, trust_remote_code: bool) -> Any:
    """``AutoTokenizer`` for ``path``; a failure becomes a :class:`ConfigError` naming ``key``."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, **hf_kwargs(trust_remote_code))
    except Exception as exc:  # noqa: BLE001 - any loader failure is the folder's, report it as such
        raise ConfigError(f"{key}: cannot load the tokenizer of {path}: {type(exc).__name__}: {exc}") from exc


def portable_tokenizer_config(folder: Path) -> None:
    # transformers 5 writes "TokenizersBackend", which older versions (and some vLLM paths) can't map.
    file = folder / "tokenizer_config.json"
    cfg = json.loads(file.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    file.write_text(json.dumps(cfg, indent=2))
