"""Dropping prompts whose rewards are not finite (``reward.on_invalid=skip``).

A prompt is dropped whole, never one sample of it: ReMax's advantage is a sample's reward minus the
greedy response's, and RLOO/GRPO baselines mix the prompt's samples, so one bad score makes every
advantage of its prompt meaningless. A prompt without a greedy response (estimators other than
ReMax) is judged by its samples alone; its ``greedy_score`` is an unused 0.0.
"""

from __future__ import annotations

import math

from remax_ray.data.rollouts import PromptRollout

__all__ = ["drop_invalid", "is_valid"]


def is_valid(rollout: PromptRollout) -> bool:
    """Every score the learner will use is finite."""
    scores = list(rollout.sample_scores)
    if rollout.greedy is not None:
        scores.append(rollout.greedy_score)
    return all(math.isfinite(s) for s in scores)


def drop_invalid(rollouts: list[PromptRollout]) -> tuple[list[PromptRollout], int]:
    """The rollouts whose scores are all finite, in order, and the number of samples dropped.

    The count is of sampled responses (what the learner would have trained on), so it compares
    with ``run.prompts_per_step * rollout.samples_per_prompt``; a dropped greedy response is not
    counted, as it is a baseline rather than a training sample.
    """
    kept = [r for r in rollouts if is_valid(r)]
    dropped = sum(len(r.samples) for r in rollouts) - sum(len(r.samples) for r in kept)
    return kept, dropped
