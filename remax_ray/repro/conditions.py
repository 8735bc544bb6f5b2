"""The paper's variance condition as a stage of ``remax-ray repro``: per task, the estimators'
gradient variance and the reward statistics at two fixed policies, the base policy and the policy
ReMax trained (its first seed's final checkpoint, kept for this), each stored as
``<out>/<task>/variance-<label>.json`` and skipped when present, like the training runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remax_ray.config import Config

log = logging.getLogger(__name__)

TRAINED_ALGO = "remax"
"""The arm whose first seed's final checkpoint is the "trained" policy: the paper's claim is about
ReMax's own estimator along its own training path."""
PREFIX = "variance-"


@dataclass(frozen=True)
class Condition:
    task: str
    label: str
    """base | trained"""
    policy: str
    """A model path (``builtin:`` name or folder); empty when the trained checkpoint is missing."""
    out: Path


def conditions(task: str, base: Config, out_dir: str | Path, seed: int | None) -> list[Condition]:
    task_dir = Path(out_dir) / task
    found = []
    if seed is not None:
        latest = task_dir / f"{TRAINED_ALGO}-seed{seed}" / "checkpoints" / "latest"
        ckpt = latest.parent / latest.read_text().strip() if latest.exists() else None
        found.append(Condition(task, "trained", str(ckpt) if ckpt and ckpt.exists() else "",
                               task_dir / f"{PREFIX}trained.json"))
    return [Condition(task, "base", base.model.path, task_dir / f"{PREFIX}base.json"), *found]


def measure(conds: list[Condition], base: Config, *, prompts: int, draws: int) -> None:
    """Measure every condition not stored yet (each starts and stops its own actors)."""
    from remax_ray.repro.variance import measure_variance

    for c in conds:
        if c.out.exists():
            log.info("repro: %s/%s variance is stored (%s); skipped", c.task, c.label, c.out)
            continue
        if not c.policy:
            log.warning("repro: %s: no %s checkpoint to measure the trained policy; run that arm with "
                        "this output folder (its checkpoint is kept) to add it", c.task, TRAINED_ALGO)
            continue
        log.info("repro: %s: variance at the %s policy (%s)", c.task, c.label, c.policy)
        # One torch thread: the probe's per-sample products are small, and two threads on two shared
        # cores mostly wait on each other (measured ~10x slower at load 8).
        measure_variance(base, policy_path=c.policy, policy_label=c.label, task_label=c.task,
                         out_json=c.out, prompts=prompts, draws=draws, threads=1)


def stored(task_dir: Path) -> list[dict[str, Any]]:
    """Every stored variance record of a task, base first."""
    files = sorted(task_dir.glob(f"{PREFIX}*.json"), key=lambda p: (p.stem != f"{PREFIX}base", p.name))
    return [json.loads(p.read_text()) for p in files]
