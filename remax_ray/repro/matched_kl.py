"""Reward at matched KL: each run's held-out rewards against its KL to the reference, and the reward
every run had when its KL crossed one common value, so policies that moved different distances from
the reference are compared at the same distance.

Where the KL comes from: the evaluations log no KL of their own. The training step logged with step
k reports ``kl``, the mean per-token KL estimate (``algo.kl_estimator``) of that step's samples,
measured in the update's forward before its optimizer step, so of the policy after k updates; the
evaluation logged at step k evaluated that same policy. The final evaluation (after the last step)
has no training step of its own and takes the last step's KL, the policy one update earlier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

NAN = float("nan")


@dataclass(frozen=True)
class EvalPoint:
    step: int
    kl: float
    greedy: float
    sample: float
    """NaN when the evaluation sampled nothing (run.eval_samples=0)."""


def eval_points(records: Sequence[dict[str, Any]]) -> list[EvalPoint]:
    """One point per evaluation, in step order. KL is NaN where no training step measured it (no
    step records, or ``kl_measured`` 0 because algo.kl_coef was 0)."""
    kl_at = {int(r["step"]): (float(r["kl"]) if r.get("kl_measured", 1.0) else NAN)
             for r in records if "step_s" in r and "kl" in r}
    out = []
    for r in sorted((r for r in records if "eval_greedy_reward" in r), key=lambda r: r["step"]):
        step = int(r["step"])
        earlier = [s for s in kl_at if s <= step]
        kl = kl_at[max(earlier)] if earlier else NAN
        out.append(EvalPoint(step, kl, float(r["eval_greedy_reward"]), float(r.get("eval_sample_reward", NAN))))
    return out


def final_kl(points: Sequence[EvalPoint]) -> float:
    return points[-1].kl if points else NAN


def common_kl(runs: Sequence[Sequence[EvalPoint]]) -> float:
    """The smallest final KL among the runs: every run starts at the reference (KL 0) and ends at or
    above it, so each one's path crosses it. NaN when a run has no KL or it is not above 0."""
    finals = [final_kl(p) for p in runs]
    if not finals or any(not math.isfinite(k) for k in finals):
        return NAN
    target = min(finals)
    return target if target > 0 else NAN


def value_at_kl(points: Sequence[EvalPoint], target: float, field: str) -> float:
    """``field`` (greedy | sample) where the run's path first reaches KL ``target``, linearly
    interpolated between the two evaluations around the crossing (the path in step order: a noisy
    KL estimate may cross more than once; the first crossing is the shortest distance travelled).
    NaN when the target is NaN or never reached."""
    if not math.isfinite(target):
        return NAN
    for a, b in zip(points, points[1:]):
        va, vb = getattr(a, field), getattr(b, field)
        if not all(math.isfinite(x) for x in (a.kl, b.kl)):
            continue
        if a.kl == target:
            return va
        if (a.kl - target) * (b.kl - target) <= 0:  # reached between a and b
            w = (target - a.kl) / (b.kl - a.kl)
            return va + w * (vb - va)
    if points and points[-1].kl == target:
        return getattr(points[-1], field)
    return NAN
