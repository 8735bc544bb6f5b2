"""The paper's claims (Li et al., arXiv 2310.10505) as verdicts on paired-by-seed differences, and
its memory and speed figures beside our measured ratios.

Margins are fixed here, before any run, and never fitted to results:

- EFFECT_OF_INTEREST = 0.2 reward units, the smallest difference worth detecting. The default
  task's reward (builtin:sentiment-rm, a Bradley-Terry logit) has a per-response sd of about 1.0
  under the base policy (docs/repro/README.md), so 0.2 is a fifth of one response's spread ("small"
  on Cohen's scale), and a sixth to a quarter of the gains of the earlier 24-step runs there (held-
  out greedy reward 0.18 before, 0.94-1.41 after). It sizes ``seeds needed``.
- NONINFERIORITY_MARGIN = 0.2, the same number: "ReMax >= PPO" is read as "ReMax is not worse than
  PPO by a difference worth detecting". Supported when the 95% interval of ReMax - PPO lies above
  -0.2, contradicted when it lies below -0.2, inconclusive otherwise.
- "ReMax > X" is superiority with margin 0: supported when the interval lies above 0, contradicted
  when it lies below 0. Not -margin: an interval wholly below 0 already shows X better, which is what
  contradicts "ReMax > X"; asking for -0.2 would call "X better by 0.1, surely" inconclusive. Not
  +margin either: the paper claims ReMax better, not better by a set amount.

The same numbers apply to every task. They were sized on the default task's reward; on a task whose
reward has another scale they stand for another effect size (the per-arm intervals show that scale).

Each interval is a two-sided 95% t-interval (a 2.5% one-sided test per direction). A comparison
needs two seeds of both arms; with fewer it is "inconclusive (n<2)", never a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from remax_ray.repro.arms import MEASURES, TaskResult
from remax_ray.repro.paper import MEMORY_FIGURES, SPEED_FIGURES
from remax_ray.repro.stats import Interval, mean_interval, noninferiority, paired_differences, seeds_needed, superiority

EFFECT_OF_INTEREST = 0.2
NONINFERIORITY_MARGIN = 0.2
ALL_MEASURES = "all"


@dataclass(frozen=True)
class ClaimSpec:
    other: str
    kind: str
    """noninferiority | superiority"""
    text: str
    paper: bool
    """A claim of the paper; the others are controls that locate where ReMax's baseline helps."""


CLAIMS = (
    ClaimSpec("ppo", "noninferiority", f"ReMax >= PPO (margin {NONINFERIORITY_MARGIN:g})", True),
    ClaimSpec("reinforce", "superiority", "ReMax > REINFORCE", True),
    ClaimSpec("reinforce_mean", "superiority", "ReMax > REINFORCE with a batch-mean baseline", False),
    ClaimSpec("rloo", "superiority", "ReMax > RLOO (2 samples per prompt)", False),
)


@dataclass
class Verdict:
    claim: str
    paper: bool
    measure: str
    seeds: list[int]
    diff: Interval
    """ReMax - other, paired by seed."""
    seeds_needed: int | None
    """For EFFECT_OF_INTEREST at the observed sd of the paired differences."""
    verdict: str


def judge(spec: ClaimSpec, diff: Interval) -> str:
    return noninferiority(diff, NONINFERIORITY_MARGIN) if spec.kind == "noninferiority" else superiority(diff)


def reward_verdicts(result: TaskResult) -> list[Verdict]:
    remax = result.arm("remax")
    out = []
    for spec in CLAIMS:
        other = result.arm(spec.other)
        if remax is None or other is None:  # one row for every measure
            missing = "remax" if remax is None else spec.other
            out.append(Verdict(spec.text, spec.paper, ALL_MEASURES, [], mean_interval([]), None,
                               f"inconclusive (no {missing} runs)"))
            continue
        for measure in MEASURES:
            diffs = paired_differences(remax.values[measure], other.values[measure])
            iv = mean_interval(diffs.values())
            out.append(Verdict(spec.text, spec.paper, measure, list(diffs), iv,
                               seeds_needed(iv.sd, EFFECT_OF_INTEREST), judge(spec, iv)))
    return out


@dataclass
class ResourceRow:
    measure: str
    ours: float
    """PPO over ReMax for time (a speed-up), 1 - ReMax/PPO for memory (a saving); NaN if unmeasured."""
    detail: str
    paper: list[tuple[str, str, str]]


def _ratio(a: float, b: float) -> float:
    return a / b if all(x is not None and math.isfinite(x) for x in (a, b)) and b else float("nan")


def resource_rows(result: TaskResult) -> list[ResourceRow]:
    remax, ppo = result.arm("remax"), result.arm("ppo")
    if remax is None or ppo is None:
        return []
    quiet = f"quiet runs: ReMax {len(remax.quiet_seeds)}/{len(remax.seeds)}, PPO {len(ppo.quiet_seeds)}/{len(ppo.seeds)}"
    mib = lambda x: f"{x / 2 ** 20:,.0f} MiB" if math.isfinite(x) else "-"  # noqa: E731
    sec = lambda x: f"{x:.3g} s" if math.isfinite(x) else "-"  # noqa: E731
    rows = [ResourceRow("memory saved: learner state (params + grads + AdamW), exact",
                        1 - _ratio(remax.learner_state_bytes, ppo.learner_state_bytes),
                        f"ReMax {mib(remax.learner_state_bytes)}, PPO {mib(ppo.learner_state_bytes)}; all runs",
                        MEMORY_FIGURES),
            ResourceRow("memory saved: learner peak RSS",
                        1 - _ratio(remax.learner_peak_rss_bytes, ppo.learner_peak_rss_bytes),
                        f"ReMax {mib(remax.learner_peak_rss_bytes)}, PPO {mib(ppo.learner_peak_rss_bytes)}; {quiet}",
                        MEMORY_FIGURES)]
    if math.isfinite(remax.learner_cuda_peak_bytes) or math.isfinite(ppo.learner_cuda_peak_bytes):
        rows.append(ResourceRow("memory saved: learner CUDA peak",
                                1 - _ratio(remax.learner_cuda_peak_bytes, ppo.learner_cuda_peak_bytes),
                                f"ReMax {mib(remax.learner_cuda_peak_bytes)}, PPO "
                                f"{mib(ppo.learner_cuda_peak_bytes)}; {quiet}", MEMORY_FIGURES))
    for phase, what in (("step_s", "seconds per step"), ("learn_s", "learner seconds per step")):
        a, b = remax.phase_s.get(phase, math.nan), ppo.phase_s.get(phase, math.nan)
        rows.append(ResourceRow(f"speed-up: {what} (PPO / ReMax)", _ratio(b, a),
                                f"ReMax {sec(a)}, PPO {sec(b)}; {quiet}", SPEED_FIGURES))
    return rows


def variance_ratio(result: TaskResult) -> float:
    """REINFORCE's grad-norm variance across steps over ReMax's: a proxy of the estimators' variance
    (it also moves as training moves the policy), reported without a verdict."""
    remax, reinforce = result.arm("remax"), result.arm("reinforce")
    return float("nan") if remax is None or reinforce is None else _ratio(reinforce.grad_norm_var, remax.grad_norm_var)
