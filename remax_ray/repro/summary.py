"""Per-run and per-algorithm numbers for the reproduction table, from ``metrics.jsonl`` records.

Pure functions over lists of dicts (the records ``MetricsSink`` writes), so they are tested with
hand-made records. Missing values are NaN (never 0): a 0 would read as a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

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


def sample_std(xs: Sequence[float]) -> float:
    return math.sqrt(sample_var(xs))


@dataclass
class RunSummary:
    """One (algorithm, seed) run."""

    algo: str
    seed: int
    samples_per_prompt: int
    steps: int
    eval_before: float
    final_reward: float
    """The last held-out greedy evaluation (after the last step)."""
    kl: float
    """Mean per-step ``kl`` over the last quarter of the steps."""
    phase_s: dict[str, float]
    """Mean seconds per phase over the steps after step 0 (which warms up)."""
    learner_state_bytes: float
    learner_peak_rss_bytes: float
    learner_cuda_peak_bytes: float
    grad_norm_var: float
    """Unbiased variance of ``grad_norm`` across this run's steps."""
    wall_s: float


@dataclass
class AlgoRow:
    """One algorithm: its runs' numbers combined over seeds."""

    algo: str
    seeds: list[int]
    samples_per_prompt: int
    final_reward_mean: float
    final_reward_std: float
    """Sample std over seeds (n - 1)."""
    eval_before_mean: float
    kl: float
    phase_s: dict[str, float] = field(default_factory=dict)
    learner_state_bytes: float = NAN
    learner_peak_rss_bytes: float = NAN
    learner_cuda_peak_bytes: float = NAN
    grad_norm_var: float = NAN
    wall_s: float = NAN


def _max(records: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return float(max(vals)) if vals else NAN


def summarize_run(algo: str, seed: int, records: list[dict[str, Any]],
                  samples_per_prompt: int = 1) -> RunSummary:
    """Reduce one run's metrics records (step records carry ``step_s``; evals ``eval_greedy_reward``)."""
    steps = sorted((r for r in records if "step_s" in r), key=lambda r: r["step"])
    evals = sorted((r for r in records if "eval_greedy_reward" in r), key=lambda r: r["step"])
    if not steps:
        raise ValueError(f"{algo} seed {seed}: no step records in its metrics")
    quarter = steps[-max(1, math.ceil(len(steps) / 4)):]
    timed = [r for r in steps if r["step"] > 0]
    last = steps[-1]
    wall = last.get("elapsed_s", sum(r["step_s"] for r in steps))
    return RunSummary(
        algo=algo, seed=seed, samples_per_prompt=samples_per_prompt, steps=len(steps),
        eval_before=evals[0]["eval_greedy_reward"] if evals else NAN,
        final_reward=evals[-1]["eval_greedy_reward"] if evals else NAN,
        kl=mean(r.get("kl") for r in quarter),
        phase_s={p: mean(r.get(p) for r in timed) for p in PHASES},
        # Peaks only grow and the state size is fixed, so the max over records is the run's value.
        learner_state_bytes=_max(steps, "learner_state_bytes"),
        learner_peak_rss_bytes=_max(steps, "learner_peak_rss_bytes"),
        learner_cuda_peak_bytes=_max(steps, "learner_cuda_peak_bytes"),
        grad_norm_var=sample_var([r.get("grad_norm") for r in steps]),
        wall_s=float(wall),
    )


def aggregate(runs: Sequence[RunSummary]) -> list[AlgoRow]:
    """One row per algorithm, in order of first appearance; means over seeds (std for reward)."""
    order = list(dict.fromkeys(r.algo for r in runs))
    rows = []
    for algo in order:
        rs = [r for r in runs if r.algo == algo]
        rows.append(AlgoRow(
            algo=algo, seeds=[r.seed for r in rs], samples_per_prompt=rs[0].samples_per_prompt,
            final_reward_mean=mean(r.final_reward for r in rs),
            final_reward_std=sample_std([r.final_reward for r in rs]),
            eval_before_mean=mean(r.eval_before for r in rs),
            kl=mean(r.kl for r in rs),
            phase_s={p: mean(r.phase_s[p] for r in rs) for p in PHASES},
            learner_state_bytes=mean(r.learner_state_bytes for r in rs),
            learner_peak_rss_bytes=mean(r.learner_peak_rss_bytes for r in rs),
            learner_cuda_peak_bytes=mean(r.learner_cuda_peak_bytes for r in rs),
            grad_norm_var=mean(r.grad_norm_var for r in rs),
            wall_s=mean(r.wall_s for r in rs),
        ))
    return rows
