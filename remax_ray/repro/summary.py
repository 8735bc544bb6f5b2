"""Per-run numbers for the reproduction table, from ``metrics.jsonl`` records (and a stored run's
``summary.json``).

Pure functions over lists of dicts (the records ``MetricsSink`` writes), so they are tested with
hand-made records. Missing values are NaN (never 0): a 0 would read as a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from remax_ray.repro.machine import is_quiet
from remax_ray.repro.matched_kl import EvalPoint, eval_points, final_kl
from remax_ray.repro.storage import StoredRun

PHASES = ("generate_s", "score_s", "learn_s", "sync_s", "step_s")
NAN = float("nan")


def mean(xs: Iterable[float]) -> float:
    xs = [float(x) for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else NAN


def sample_var(xs: Sequence[float]) -> float:
    """Unbiased variance (n - 1); NaN below two values, where no spread can be measured."""
    xs = [float(x) for x in xs if x is not None and math.isfinite(x)]
    if len(xs) < 2:
        return NAN
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


@dataclass
class RunSummary:
    """One (task, algorithm, seed) run."""

    algo: str
    seed: int
    samples_per_prompt: int
    steps: int
    eval_before: float
    """The held-out greedy reward before the first step."""
    final_greedy: float
    """The last held-out evaluation (after the last step): mean reward of the greedy responses."""
    final_sample: float
    """The same evaluation's mean reward of the sampled responses (the objective); NaN without samples."""
    kl: float
    """Mean per-step ``kl`` over the last quarter of the steps."""
    final_kl: float
    """The KL assigned to the final evaluation (see matched_kl)."""
    points: list[EvalPoint]
    phase_s: dict[str, float]
    """Mean seconds per phase over the steps after step 0 (which warms up)."""
    learner_state_bytes: float
    learner_peak_rss_bytes: float
    learner_cuda_peak_bytes: float
    grad_norm_var: float
    """Unbiased variance of ``grad_norm`` across this run's steps."""
    wall_s: float
    task: str = ""
    other_load: float = NAN
    """Share of the machine's CPU time other work used during the run (see machine.py)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """The stored summary.json (command, commit, device, evaluation size)."""

    @property
    def quiet(self) -> bool:
        return is_quiet(self.other_load)


def _max(records: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return float(max(vals)) if vals else NAN


def summarize_run(algo: str, seed: int, records: list[dict[str, Any]], samples_per_prompt: int = 1, *,
                  task: str = "", other_load: float = NAN, meta: dict[str, Any] | None = None) -> RunSummary:
    """Reduce one run's metrics records (step records carry ``step_s``; evals ``eval_greedy_reward``)."""
    steps = sorted((r for r in records if "step_s" in r), key=lambda r: r["step"])
    if not steps:
        raise ValueError(f"{algo} seed {seed}: no step records in its metrics")
    points = eval_points(records)
    quarter = steps[-max(1, math.ceil(len(steps) / 4)):]
    timed = [r for r in steps if r["step"] > 0]
    last = steps[-1]
    wall = last.get("elapsed_s", sum(r["step_s"] for r in steps))
    return RunSummary(
        algo=algo, seed=seed, samples_per_prompt=samples_per_prompt, steps=len(steps),
        eval_before=points[0].greedy if points else NAN,
        final_greedy=points[-1].greedy if points else NAN,
        final_sample=points[-1].sample if points else NAN,
        kl=mean(r.get("kl") for r in quarter), final_kl=final_kl(points), points=points,
        phase_s={p: mean(r.get(p) for r in timed) for p in PHASES},
        # Peaks only grow and the state size is fixed, so the max over records is the run's value.
        learner_state_bytes=_max(steps, "learner_state_bytes"),
        learner_peak_rss_bytes=_max(steps, "learner_peak_rss_bytes"),
        learner_cuda_peak_bytes=_max(steps, "learner_cuda_peak_bytes"),
        grad_norm_var=sample_var([r.get("grad_norm") for r in steps]),
        wall_s=float(wall), task=task, other_load=other_load, meta=dict(meta or {}),
    )


def summarize_stored(run: StoredRun) -> RunSummary:
    load = run.meta.get("other_load")
    return summarize_run(run.algo, run.seed, run.records, int(run.meta.get("samples_per_prompt", 1)),
                         task=run.task, other_load=NAN if load is None else float(load), meta=run.meta)
