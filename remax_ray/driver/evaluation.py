"""Held-out evaluation, shared by the trainer's evaluations and ``remax-ray eval``: greedy and n
sampled responses to the held-out prompts in one generate call, scored in one reward call.

Sampling seeds use the fixed step :data:`EVAL_STEP`, so every evaluation of a run samples each
held-out prompt with the same seeds: between two evaluations only the policy changed, which is what
the sample tables (``samples.jsonl``, ``remax-ray samples``) compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remax_ray.data.rollouts import PromptRollout
from remax_ray.rollout.validity import drop_invalid

EVAL_STEP = -1

Generate = Callable[..., list[PromptRollout]]  # (prompts, *, n, step, greedy) -> rollouts
Score = Callable[[list[PromptRollout], list[dict]], None]


@dataclass
class Evaluation:
    rollouts: list[PromptRollout]
    """Every held-out prompt's responses and rewards, in held-out order (invalid ones included)."""
    columns: list[dict]
    greedy_reward: float
    """Mean reward of the greedy responses of the prompts whose rewards are all finite."""
    sample_reward: float | None
    """Mean reward of their sampled responses; None without samples."""
    valid: int
    """Prompts whose rewards are all finite (the means are over these)."""

    def metrics(self) -> dict[str, float]:
        out = {"eval_greedy_reward": self.greedy_reward}
        if self.sample_reward is not None:
            out["eval_sample_reward"] = self.sample_reward
        return out

    def table(self, limit: int | None = None) -> list[dict[str, Any]]:
        """One record per held-out prompt (the first ``limit``): prompt, greedy response, every
        sampled response, their rewards (None where not finite) and the row's other columns."""
        return [{"index": i, "prompt": r.prompt,
                 "greedy": r.greedy.text if r.greedy else None, "greedy_reward": _finite(r.greedy_score),
                 "samples": [c.text for c in r.samples], "sample_rewards": [_finite(s) for s in r.sample_scores],
                 "columns": self.columns[i] if self.columns else {}}
                for i, r in enumerate(self.rollouts[:limit])]

    def samples(self, step: int, limit: int) -> list[dict[str, Any]]:
        """The records of ``samples.jsonl`` for an evaluation after ``step`` steps: one sampled
        response per prompt (the first; None when the evaluation sampled none)."""
        return [{"step": step, "index": t["index"], "prompt": t["prompt"], "greedy": t["greedy"],
                 "greedy_reward": t["greedy_reward"],
                 "sample": t["samples"][0] if t["samples"] else None,
                 "sample_reward": t["sample_rewards"][0] if t["sample_rewards"] else None,
                 "columns": t["columns"]}
                for t in self.table(limit)]


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def evaluate(generate: Generate, score: Score, prompts: list[str], columns: list[dict], *,
             n: int) -> Evaluation:
    """Greedy + ``n`` sampled responses to ``prompts``, scored; the means skip prompts with a
    non-finite reward (``reward.on_invalid=skip``; ``error`` raised in the scorer already)."""
    rollouts = generate(prompts, n=n, step=EVAL_STEP, greedy=True)
    score(rollouts, columns)
    kept, _ = drop_invalid(rollouts)
    greedy = sum(r.greedy_score for r in kept) / max(len(kept), 1)
    sampled = [s for r in kept for s in r.sample_scores]
    sample_reward = sum(sampled) / max(len(sampled), 1) if n else None
    return Evaluation(rollouts, columns, greedy, sample_reward, len(kept))
