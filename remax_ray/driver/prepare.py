"""The builtin assets a run needs, prepared on the driver before any actor starts (``remax-ray
assets`` prepares them all). Each builder lives with what it builds (:mod:`remax_ray.assets` for
models and corpora, :mod:`remax_ray.reward.train_rm` for the reward models); this module only picks
which ones a config names, so it sits above both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from remax_ray.assets.arithmetic import prepare_arithmetic
from remax_ray.assets.corpora import prepare_movie_pairs, prepare_movie_reviews
from remax_ray.assets.home import (
    ARITHMETIC,
    BUILTIN_PREFIX,
    MOVIE_PAIRS,
    MOVIE_REVIEWS,
    SENTIMENT_RM,
    SMOLLM2,
    STEERED_PAIRS,
    STEERED_REVIEWS,
    STEERED_RM,
    TINY,
)
from remax_ray.assets.smollm2 import prepare_smollm2
from remax_ray.assets.steered import prepare_steered_pairs, prepare_steered_reviews
from remax_ray.assets.tiny import prepare_tiny
from remax_ray.config import REWARD_KINDS
from remax_ray.reward.train_rm import prepare_sentiment_rm, prepare_steered_rm

# What `remax-ray assets` builds, in this order (the reward models after their pairs).
DEFAULT_ASSETS: dict[str, Callable[..., Path]] = {
    SMOLLM2: prepare_smollm2, MOVIE_REVIEWS: prepare_movie_reviews, MOVIE_PAIRS: prepare_movie_pairs,
    SENTIMENT_RM: prepare_sentiment_rm, STEERED_REVIEWS: prepare_steered_reviews,
    STEERED_PAIRS: prepare_steered_pairs, STEERED_RM: prepare_steered_rm, ARITHMETIC: prepare_arithmetic,
}
_BUILDERS = {**DEFAULT_ASSETS, TINY: prepare_tiny}


def prepare_all(log=print) -> dict[str, Path]:
    """Build every default asset that is missing; idempotent and cheap when already cached."""
    return {name: build(log) for name, build in DEFAULT_ASSETS.items()}


def prepare_builtins_for(*paths: str, log=print) -> None:
    """Prepare just the builtin assets that these config paths name (a no-op when cached)."""
    for path in paths:
        build = _BUILDERS.get(path[len(BUILTIN_PREFIX):]) if path.startswith(BUILTIN_PREFIX) else None
        if build is not None:
            build(log)


def prepare_builtins_for_config(cfg, log=print) -> None:
    """The builtin assets a training config uses; the reward model only when the reward's kind reads
    it (``RewardKind.reads_model_path``: kind=vader leaves the default reward.model_path unused, so
    nothing is trained for it)."""
    reward_model = [cfg.reward.model_path] if REWARD_KINDS[cfg.reward.kind].reads_model_path else []
    prepare_builtins_for(cfg.model.path, cfg.run.dataset, *reward_model, log=log)
