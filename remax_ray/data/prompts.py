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

from remax_ray.assets import BUILTIN_PREFIX, resolve_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSplits:
    train: list[str]
    eval: list[str]
    skipped: int
    """Lines that were not a JSON object with a non-empty string "prompt" (logged, not fatal)."""


def read_jsonl_prompts(path: Path) -> tuple[list[str], int]:
    """Prompts from a jsonl file; malformed lines are counted and logged, never silently dropped."""
    if not path.exists():
        raise FileNotFoundError(f"prompt file {path} does not exist")
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
            prompts.append(prompt)
        else:
            skipped += 1
            log.warning("%s:%d: skipped (need a JSON object with a non-empty string 'prompt')", path, lineno)
    return prompts, skipped


def load_splits(dataset: str, eval_prompts: int, seed: int) -> PromptSplits:
    """Train and held-out prompts. A user file is split by a seeded shuffle; built-ins ship both."""
    if dataset.startswith(BUILTIN_PREFIX):
        train, s1 = read_jsonl_prompts(resolve_dataset(dataset, "train"))
        held, s2 = read_jsonl_prompts(resolve_dataset(dataset, "eval"))
        splits = PromptSplits(train, held[:eval_prompts], s1 + s2)
    else:
        prompts, skipped = read_jsonl_prompts(Path(dataset))
        order = list(range(len(prompts)))
        random.Random(seed).shuffle(order)
        held = [prompts[i] for i in order[:eval_prompts]]
        splits = PromptSplits([prompts[i] for i in order[eval_prompts:]], held, skipped)
    if not splits.train or not splits.eval:
        raise ValueError(f"{dataset}: need at least one training and one held-out prompt, got "
                         f"{len(splits.train)} and {len(splits.eval)} ({splits.skipped} lines skipped)")
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
