"""One task's runs combined per algorithm ("arm"): reward means with t-intervals over seeds, the
reward at the task's matched KL, and the seconds and bytes of the runs that had the machine alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from remax_ray.repro.matched_kl import common_kl, value_at_kl
from remax_ray.repro.stats import Interval, mean_interval
from remax_ray.repro.summary import NAN, PHASES, RunSummary, mean

ARM_ORDER = ("remax", "ppo", "reinforce", "rloo", "reinforce_mean", "grpo")
MEASURES = {
    "final_greedy": "held-out greedy reward, final",
    "final_sample": "held-out sampled reward, final",
    "greedy_at_kl": "held-out greedy reward at matched KL",
    "sample_at_kl": "held-out sampled reward at matched KL",
}


def run_values(run: RunSummary, target_kl: float) -> dict[str, float]:
    return {"final_greedy": run.final_greedy, "final_sample": run.final_sample,
            "greedy_at_kl": value_at_kl(run.points, target_kl, "greedy"),
            "sample_at_kl": value_at_kl(run.points, target_kl, "sample")}


@dataclass
class ArmRow:
    algo: str
    seeds: list[int]
    samples_per_prompt: int
    values: dict[str, dict[int, float]]
    """measure -> seed -> value: what the paired comparisons pair."""
    intervals: dict[str, Interval]
    eval_before: float
    kl: float
    """Mean over seeds of the last quarter's mean ``kl``."""
    final_kl: float
    quiet_seeds: list[int] = field(default_factory=list)
    phase_s: dict[str, float] = field(default_factory=dict)
    """Quiet runs only (NaN when none)."""
    learner_state_bytes: float = NAN
    """All runs: an exact count of tensor bytes, which no other load changes."""
    learner_peak_rss_bytes: float = NAN
    learner_cuda_peak_bytes: float = NAN
    """Quiet runs only."""
    grad_norm_var: float = NAN


@dataclass
class TaskResult:
    task: str
    target_kl: float
    runs: list[RunSummary]
    arms: list[ArmRow]

    def arm(self, algo: str) -> ArmRow | None:
        return next((a for a in self.arms if a.algo == algo), None)


def _order(algos: Sequence[str]) -> list[str]:
    known = [a for a in ARM_ORDER if a in algos]
    return known + [a for a in dict.fromkeys(algos) if a not in known]


def arm_row(algo: str, runs: Sequence[RunSummary], target_kl: float) -> ArmRow:
    runs = sorted(runs, key=lambda r: r.seed)
    values = {m: {} for m in MEASURES}
    for r in runs:
        for m, v in run_values(r, target_kl).items():
            values[m][r.seed] = v
    quiet = [r for r in runs if r.quiet]
    return ArmRow(
        algo=algo, seeds=[r.seed for r in runs], samples_per_prompt=runs[0].samples_per_prompt,
        values=values, intervals={m: mean_interval(v.values()) for m, v in values.items()},
        eval_before=mean(r.eval_before for r in runs), kl=mean(r.kl for r in runs),
        final_kl=mean(r.final_kl for r in runs), quiet_seeds=[r.seed for r in quiet],
        phase_s={p: mean(r.phase_s.get(p, NAN) for r in quiet) for p in PHASES},
        learner_state_bytes=mean(r.learner_state_bytes for r in runs),
        learner_peak_rss_bytes=mean(r.learner_peak_rss_bytes for r in quiet),
        learner_cuda_peak_bytes=mean(r.learner_cuda_peak_bytes for r in quiet),
        grad_norm_var=mean(r.grad_norm_var for r in runs),
    )


def task_result(task: str, runs: Sequence[RunSummary]) -> TaskResult:
    target = common_kl([r.points for r in runs])
    algos = _order([r.algo for r in runs])
    arms = [arm_row(a, [r for r in runs if r.algo == a], target) for a in algos]
    return TaskResult(task, target, list(runs), arms)
