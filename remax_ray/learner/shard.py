"""Which learner rank trains which prompts of a step.

A prompt never splits: its samples, its greedy response and (for RLOO/GRPO) its group stay on one
rank, so every per-prompt baseline is computed where its samples are. Ranks are balanced by the
tokens they will run (prompt + response, every sample), since a rank's forward/backward time grows
with its tokens and the step waits for the slowest rank.
"""

from __future__ import annotations

from remax_ray.data.rollouts import PromptRollout


def rollout_tokens(r: PromptRollout) -> int:
    """Tokens the learner runs for one prompt: each sample's prompt + response."""
    return sum(len(r.prompt_ids) + len(s.token_ids) for s in r.samples)


def split_by_tokens(token_counts: list[int], ranks: int) -> list[list[int]]:
    """Indices per rank: largest first, each to the rank with the fewest tokens so far (ties: the
    lower rank), then each rank's indices back in batch order. Deterministic; every rank gets a
    prompt when there are at least ``ranks`` of them (the config guarantees it before dropping)."""
    loads = [0] * ranks
    shards: list[list[int]] = [[] for _ in range(ranks)]
    for i in sorted(range(len(token_counts)), key=lambda i: (-token_counts[i], i)):
        target = min(range(ranks), key=lambda k: (loads[k], len(shards[k]), k))
        shards[target].append(i)
        loads[target] += token_counts[i]
    return [sorted(s) for s in shards]


def shard_rollouts(rollouts: list[PromptRollout], ranks: int) -> list[tuple[list[PromptRollout], list[int]]]:
    """Per rank: its rollouts and their positions in ``rollouts`` (what ``Learner.train_step`` takes:
    PPO's mini-batches are drawn over the whole batch by position)."""
    return [([rollouts[i] for i in idx], idx) for idx in split_by_tokens([rollout_tokens(r) for r in rollouts], ranks)]
