"""Built-in reward functions for ``reward.kind=function``.

Each is referenced as ``remax_ray.reward.functions:<name>`` and follows the
function-reward contract ``fn(prompts, responses) -> list[float]`` (one float
per pair; prompts and responses arrive raw, without the template).  They are
deliberately tiny: cheap, deterministic rewards for smoke and integration
tests, not serious reward models.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["char_share_e", "response_length", "vader"]


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    # Imported and built lazily and once: the analyser loads its lexicon from
    # disk, which is wasteful per call and pointless for the other functions.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader(prompts: list[str], responses: list[str]) -> list[float]:
    """VADER compound sentiment of each response alone, in [-1, 1]."""
    analyzer = _analyzer()
    return [float(analyzer.polarity_scores(r)["compound"]) for r in responses]


def response_length(prompts: list[str], responses: list[str]) -> list[float]:
    """Response length in characters divided by 100 (a trivial toy reward)."""
    return [len(r) / 100.0 for r in responses]


def char_share_e(prompts: list[str], responses: list[str]) -> list[float]:
    """Fraction of the response's characters that are the letter ``"e"``.

    Lower-case only, so the count is unambiguous; an empty response scores 0.
    A small policy can visibly learn to raise it within a few steps, which is
    what the integration tests rely on.
    """
    return [r.count("e") / len(r) if r else 0.0 for r in responses]
