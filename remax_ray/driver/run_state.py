"""The driver's share of a checkpoint: step (= data cursor), counters, RNG states, reference path.

The prompts of step k are a pure function of (run.seed, k, run.prompts_per_step, dataset), so the
data cursor is the step count plus the settings that define the order; a resume checks those agree.
The learner's share (optimizer, LR schedule, torch RNG, critic) lives in ``trainer_state.pt``.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from remax_ray.data.rollouts import Completion, PromptRollout

COUNTERS = ("actor_retries", "generator_resyncs", "skipped_samples", "skipped_prompts", "steps_without_update",
            "learner_restarts")


@dataclass
class RunState:
    step: int = 0
    """Training steps completed; the next step's prompts are batch ``step`` of the seeded order."""
    prompts_consumed: int = 0
    data_order: dict = field(default_factory=dict)
    """The settings that define the prompt order (seed, prompts_per_step, dataset, train size) and
    which policy samples each step's batch (rollout.overlap)."""
    reference_path: str = ""
    """The KL anchor: the ORIGINAL model, never a checkpoint of this run."""
    eval_before: float | None = None
    metrics_lines: int = 0
    """Lines of metrics.jsonl written when this state was taken; a resume drops later ones."""
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0.0))
    pending: list | None = None
    """rollout.overlap: the next step's rollouts, already sampled (one policy behind). Every checkpoint
    of an overlapped run carries them, the one saved when a step fails too."""
    pending_lag: float = 1.0
    """Updates between the policy that sampled ``pending`` and the one that trains on it: 0 where the
    step it was sampled during made no update."""
    python_rng: list | None = None
    numpy_rng: list | None = None

    def capture_rng(self) -> None:
        version, internal, gauss = random.getstate()
        self.python_rng = [version, list(internal), gauss]
        name, keys, pos, has_gauss, cached = np.random.get_state()
        self.numpy_rng = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]

    def restore_rng(self) -> None:
        if self.python_rng is not None:
            version, internal, gauss = self.python_rng
            random.setstate((version, tuple(internal), gauss))
        if self.numpy_rng is not None:
            name, keys, pos, has_gauss, cached = self.numpy_rng
            np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_file(cls, path: Path) -> RunState:
        return cls.from_json(path.read_text())

    @classmethod
    def from_json(cls, text: str) -> RunState:
        data = json.loads(text)
        state = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        state.counters = {**dict.fromkeys(COUNTERS, 0.0), **state.counters}
        return state


def data_order(seed: int, prompts_per_step: int, dataset: str, num_train: int, overlap: bool) -> dict:
    return {"seed": seed, "prompts_per_step": prompts_per_step, "dataset": dataset, "num_train": num_train,
            "overlap": overlap}


def rollouts_to_json(rollouts: list[PromptRollout]) -> list[dict]:
    return [asdict(r) for r in rollouts]


def rollouts_from_json(items: list[dict]) -> list[PromptRollout]:
    def completion(c: dict | None) -> Completion | None:
        return Completion(**c) if c is not None else None

    return [PromptRollout(**{**r, "samples": [completion(c) for c in r["samples"]], "greedy": completion(r["greedy"])})
            for r in items]
