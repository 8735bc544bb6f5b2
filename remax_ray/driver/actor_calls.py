"""The two calls a training step and an evaluation both make: generate across the generator
replicas, and score every response in one call of the reward actor."""

from __future__ import annotations

from typing import Any

import ray

from remax_ray.data.prompts import shard_prompts
from remax_ray.data.rollouts import PromptRollout


def generate_async(generators: list[Any], prompts: list[str], *, n: int, step: int, seed: int,
                   greedy: bool = True) -> list:
    """One generate call per generator on its share of ``prompts`` (futures, in prompt order)."""
    return [g.generate.remote(share, n=n, step=step, first_index=lo, run_seed=seed, greedy=greedy)
            for g, (lo, share) in zip(generators, shard_prompts(prompts, len(generators)))]


def generate(generators: list[Any], prompts: list[str], *, n: int, step: int, seed: int,
             greedy: bool = True) -> list[PromptRollout]:
    """Shard prompts across generator replicas (contiguous shares) and return them in order."""
    shards = ray.get(generate_async(generators, prompts, n=n, step=step, seed=seed, greedy=greedy))
    return [r for shard in shards for r in shard]


def score(reward: Any, rollouts: list[PromptRollout], columns: list[dict] | None = None) -> None:
    """Score every sampled (and greedy, where present) response in one batched call; ``columns``
    (parallel to ``rollouts``: each prompt's other dataset columns) reach a reward function that
    asks for them. Rows without columns are not sent, so such a call is exactly the plain one."""
    prompts, responses, rows = [], [], []
    for i, r in enumerate(rollouts):
        for c in [*r.samples, *([r.greedy] if r.greedy else [])]:
            prompts.append(r.prompt)
            responses.append(c.text)
            rows.append(columns[i] if columns else {})
    extra = {"rows": rows} if any(rows) else {}
    scores = ray.get(reward.score.remote(prompts, responses, **extra))
    k = 0
    for r in rollouts:
        r.sample_scores = scores[k : k + len(r.samples)]
        k += len(r.samples)
        if r.greedy:
            r.greedy_score = scores[k]
            k += 1
