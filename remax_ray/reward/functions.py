"""Built-in reward functions for ``reward.kind=function``.

Each is referenced as ``remax_ray.reward.functions:<name>`` and follows the
function-reward contract ``fn(prompts, responses) -> list[float]`` (one float
per pair; prompts and responses arrive raw, without the template); a function
that names a dataset column as a further parameter (``exact_match``'s
``answer``) also gets that column.  They are deliberately tiny: cheap,
deterministic rewards for smoke and integration tests and the worked example
of ``builtin:arithmetic``, not serious reward models.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["char_share_e", "exact_match", "last_number", "response_length", "vader"]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


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


def last_number(text: str) -> str | None:
    """The last number written in ``text`` ("-3", "42", "2.5"; thousands separators removed), or None."""
    found = _NUMBER.findall(text.replace(",", ""))
    return found[-1] if found else None


def exact_match(prompts: list[str], responses: list[str], answer: list[Any]) -> list[float]:
    """1.0 where the last number of the response is exactly the row's ``answer``, else 0.0.

    The verifiable reward of ``builtin:arithmetic``: ``answer`` is the dataset column of that name,
    passed by the scorer because this function names it. The last number, because a chat model
    restates the problem before it answers ("36 - 25 = 11"); so "42", "17 + 25 = 42" and "The
    answer is 42." score 1, while "42 or 41" scores 0: the response must end on its answer. A row
    without an answer (None) scores 0.
    """
    return [float(a is not None and last_number(r) == str(a).strip()) for r, a in zip(responses, answer, strict=True)]
