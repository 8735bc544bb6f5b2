"""The builtin assets a run needs, prepared on the driver before any actor starts (``remax-ray
assets`` prepares them all). Each builder lives with what it builds (:mod:`remax_ray.assets` for
models and corpora, :mod:`remax_ray.reward.train_rm` for the reward model); this module only picks
which ones a config names, so it sits above both.
"""

from __future__ import annotations

from pathlib import Path

from remax_ray.assets.arithmetic import prepare_arithmetic
from remax_ray.assets.corpora import prepare_movie_pairs, prepare_movie_reviews
from remax_ray.assets.home import (
    ARITHMETIC,
    BUILTIN_PREFIX,
    MOVIE_PAIRS,
    MOVIE_REVIEWS,
    SENTIMENT_RM,
    SMOLLM2,
    TINY,
)
from remax_ray.assets.smollm2 import prepare_smollm2
from remax_ray.assets.tiny import prepare_tiny
from remax_ray.reward.train_rm import prepare_sentiment_rm


def prepare_all(log=print) -> dict[str, Path]:
    """Build every default asset that is missing; idempotent and cheap when already cached."""
    return {SMOLLM2: prepare_smollm2(log), MOVIE_REVIEWS: prepare_movie_reviews(log),
            MOVIE_PAIRS: prepare_movie_pairs(log), SENTIMENT_RM: prepare_sentiment_rm(log),
            ARITHMETIC: prepare_arithmetic(log)}


def prepare_builtins_for(*paths: str, log=print) -> None:
    """Prepare just the builtin assets that these config paths name (a no-op when cached)."""
    for path in paths:
        if path == BUILTIN_PREFIX + SMOLLM2:
            prepare_smollm2(log)
        elif path == BUILTIN_PREFIX + TINY:
            prepare_tiny(log)
        elif path == BUILTIN_PREFIX + MOVIE_REVIEWS:
            prepare_movie_reviews(log)
        elif path == BUILTIN_PREFIX + ARITHMETIC:
            prepare_arithmetic(log)
        elif path == BUILTIN_PREFIX + SENTIMENT_RM:
            prepare_sentiment_rm(log)


def prepare_builtins_for_config(cfg, log=print) -> None:
    """The builtin assets a training config uses; the reward model only when the reward is kind=hf
    (kind=vader leaves the default reward.model_path unused, so nothing is trained for it)."""
    reward_model = [cfg.reward.model_path] if cfg.reward.kind == "hf" else []
    prepare_builtins_for(cfg.model.path, cfg.run.dataset, *reward_model, log=log)
