"""Prompt loading and the deterministic per-step batch order.

The batch for a step is a pure function of (seed, step), so a resumed or retried step sees the same
prompts: all the data cursor state the trainer needs is the step number.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from remax_ray.assets.home import BUILTIN_PREFIX, resolve_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSplits:
    train: list[str]
    eval: list[str]
    skipped: int
    """Lines that were not a JSON object with a non-empty string "prompt" (logged, not fatal)."""
    too_long: int = 0
    """Prompts of the dataset's files longer than rollout.max_prompt_tokens (truncated or dropped,
    as rollout.long_prompts says; logged)."""
    truncated: int = 0
    """Of those, the prompts kept with only their last max_prompt_tokens tokens."""


# A long-prompt policy: numbered prompts of one file -> (kept prompts, too long, truncated).
Fit = Callable[[list[tuple[int, str]], Path], tuple[list[str], int, int]]


def read_jsonl_prompts(path: Path) -> tuple[list[str], int]:
    """Prompts from a jsonl file; malformed lines are counted and logged, never silently dropped."""
    numbered, skipped = read_numbered_prompts(path)
    return [p for _, p in numbered], skipped


def read_numbered_prompts(path: Path) -> tuple[list[tuple[int, str]], int]:
    """``(line number, prompt)`` pairs of a jsonl file, and the number of skipped lines."""
    if not path.exists():
        raise FileNotFoundError(f"run.dataset: prompt file {path} does not exist")
    prompts, skipped = [], 0
    # Split on "\n" only: str.splitlines() would also break on U+2028 etc., which JSON allows raw
    # inside strings. utf-8-sig drops a byte-order mark left by Windows editors.
    text = path.read_text(encoding="utf-8-sig")
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            prompt = json.loads(line).get("prompt")
        except (json.JSONDecodeError, AttributeError):
            prompt = None
        if isinstance(prompt, str) and prompt.strip():
            prompts.append((lineno, prompt))
        else:
            skipped += 1
            log.warning("%s:%d: skipped (need a JSON object with a non-empty string 'prompt')", path, lineno)
    return prompts, skipped


def _read(path: Path, fit: Fit | None) -> tuple[list[str], int, int, int]:
    """Prompts of one file after the long-prompt policy: (prompts, skipped, too long, truncated)."""
    numbered, skipped = read_numbered_prompts(path)
    if not numbered:
        empty = not path.read_text(encoding="utf-8-sig").strip()
        raise ValueError(f"run.dataset: {path} " + ("is empty" if empty else
                         f"has no usable prompt ({skipped} lines skipped, see the warnings above)"))
    if fit is None:
        return [p for _, p in numbered], skipped, 0, 0
    prompts, too_long, truncated = fit(numbered, path)
    return prompts, skipped, too_long, truncated


def load_splits(dataset: str, eval_prompts: int, seed: int, fit: Fit | None = None) -> PromptSplits:
    """Train and held-out prompts. A user file is split by a seeded shuffle; built-ins ship both.

    ``fit`` (the long-prompt policy, see :mod:`remax_ray.driver.preflight`) runs on every file before it is
    split or cut to ``eval_prompts``, so skipping a prompt never shrinks the held-out set.
    """
    if dataset.startswith(BUILTIN_PREFIX):
        train, s1, l1, t1 = _read(resolve_dataset(dataset, "train"), fit)
        held, s2, l2, t2 = _read(resolve_dataset(dataset, "eval"), fit)
        splits = PromptSplits(train, held[:eval_prompts], s1 + s2, l1 + l2, t1 + t2)
    else:
        prompts, skipped, too_long, truncated = _read(Path(dataset), fit)
        order = list(range(len(prompts)))
        random.Random(seed).shuffle(order)
        held = [prompts[i] for i in order[:eval_prompts]]
        splits = PromptSplits([prompts[i] for i in order[eval_prompts:]], held, skipped, too_long,
                              truncated)
    if not splits.train or not splits.eval:
        dropped = splits.too_long - splits.truncated
        raise ValueError(f"{dataset}: need at least one training and one held-out prompt, got "
                         f"{len(splits.train)} and {len(splits.eval)} ({splits.skipped} lines skipped"
                         + (f", {dropped} too-long prompts dropped)" if dropped else ")"))
    return splits


def batch_indices(num_prompts: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Indices of the prompts for ``step``: epochs of seeded permutations, read consecutively."""
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, num_prompts)
        order = list(range(num_prompts))
        random.Random(f"{seed}-{epoch}").shuffle(order)
        take = order[offset : offset + batch_size - len(out)]
        out.extend(take)
        pos += len(take)
    return out


def shard_prompts(prompts: list[str], num_shards: int) -> list[tuple[int, list[str]]]:
    """Split a step's prompts across ``num_shards`` generators: contiguous shares whose sizes differ
    by at most one (the first ones take the remainder), each with the index of its first prompt in
    ``prompts`` (the sampling seeds are keyed by it, so any split gives the same samples).

    With at least as many prompts as generators (the config's rule) every generator gets one; fewer
    prompts leave the last generators out rather than sending them empty calls."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    base, extra = divmod(len(prompts), num_shards)
    out, lo = [], 0
    for i in range(num_shards):
        size = base + (1 if i < extra else 0)
        if size:
            out.append((lo, prompts[lo : lo + size]))
        lo += size
    return out
