"""Plain data passed between actors: lists and ints only, so it pickles cheaply through Ray."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Completion:
    """One generated response."""

    token_ids: list[int]
    text: str
    finish_reason: str
    """'stop' (EOS or stop string) or 'length' (hit max_new_tokens, so there is no EOS)."""
    logprobs: list[float] | None = None
    """vLLM's log-prob of each sampled token: the behaviour policy's, which ``rollout.overlap``'s
    importance weights need (the learner refuses a sample without them there); otherwise a
    diagnostic (``logp_diff``), since the learner recomputes its own."""


@dataclass
class PromptRollout:
    """All responses to one prompt: n samples and, for estimators with a greedy baseline, one greedy
    response (None otherwise), from the same vLLM call."""

    prompt: str
    prompt_ids: list[int]
    samples: list[Completion]
    greedy: Completion | None
    sample_scores: list[float] = field(default_factory=list)
    greedy_score: float = 0.0
    weight_version: int = 0
    """The driver's weight sync the responses were sampled with (0: the model the generator was
    built from); the driver re-syncs and samples again when it is not the one it expects."""
