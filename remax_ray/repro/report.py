"""``results.md`` and ``results.json``: the table, the claims, and how the numbers were made."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from remax_ray.repro.claims import Claim
from remax_ray.repro.summary import PHASES, AlgoRow, RunSummary

MIB = 1024 ** 2


@dataclass
class ReportContext:
    """How the runs were made, written next to the numbers."""

    command: str
    config_yaml: str
    overrides: dict[str, list[str]]
    """Per-algorithm overrides applied on top of the base configuration (seed and folder aside)."""
    steps: int
    prompts_per_step: int
    seeds: list[int]
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)


def _f(x: float, spec: str) -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def _mib(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x / MIB:.1f}"


def _verdict(holds: bool | None) -> str:
    return "n/a" if holds is None else ("yes" if holds else "no")


def table(rows: list[AlgoRow]) -> str:
    head = ["algorithm", "samples/prompt", "seeds", "final greedy reward", "reward before",
            "KL (last 1/4)", *PHASES, "state MiB", "peak RSS MiB", "CUDA peak MiB", "grad-norm var"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.algo, str(r.samples_per_prompt), ",".join(map(str, r.seeds)),
                 f"{_f(r.final_reward_mean, '.4f')} ± {_f(r.final_reward_std, '.4f')}",
                 _f(r.eval_before_mean, ".4f"), _f(r.kl, ".3g"),
                 *(_f(r.phase_s.get(p, math.nan), ".3f") for p in PHASES),
                 _mib(r.learner_state_bytes), _mib(r.learner_peak_rss_bytes),
                 _mib(r.learner_cuda_peak_bytes), _f(r.grad_norm_var, ".3g")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_table(claims: list[Claim]) -> str:
    lines = ["| claim | measured on | ratio | target | holds | detail |", "|---|---|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c.name} | {c.metric} | {_f(c.ratio, '.3f')} | {c.target} | "
                     f"{_verdict(c.holds)} | {c.detail} |")
    return "\n".join(lines)


DEFINITIONS = """\
- final greedy reward: mean reward of greedy responses to the held-out prompts after the last
  step; mean ± sample std (n - 1) over seeds. "reward before" is the same evaluation before step 1.
- KL (last 1/4): the per-step `kl` to the reference model, averaged over the last quarter of the
  steps, then over seeds.
- generate_s … step_s: seconds per phase, mean over the steps after step 0 (step 0 warms up), then
  over seeds.
- state MiB: `learner_state_bytes`, the exact bytes of parameters + gradients + optimizer state of
  every model the learner holds (policy, frozen reference, and PPO's value model). peak RSS MiB:
  `learner_peak_rss_bytes`, the learner process's peak resident memory (it includes the Python/torch
  runtime, which dilutes the ratio on small models). CUDA peak MiB: `learner_cuda_peak_bytes` (GPU only).
- grad-norm var: unbiased variance of the pre-clipping `grad_norm` across one run's steps, averaged
  over seeds.
- seed noise: the standard error of the difference of two seed means, sqrt(s1²/n1 + s2²/n2).
"""


def render_markdown(rows: list[AlgoRow], claims: list[Claim], ctx: ReportContext) -> str:
    parts = [
        "# ReMax reproduction (arXiv 2310.10505)", "",
        f"{ctx.steps} steps of {ctx.prompts_per_step} prompts per algorithm and seed; seeds "
        f"{', '.join(map(str, ctx.seeds))}; learner on {ctx.device}. Every algorithm sees the same "
        "training prompts per step and the same held-out prompts for a given seed.", "",
        table(rows), "",
        *(f"- {n}" for n in ctx.notes), *([""] if ctx.notes else []),
        "## Claims", "", claims_table(claims), "",
        "## Definitions", "", DEFINITIONS,
        "## Command", "", "```", ctx.command, "```", "",
        "## Configuration", "",
        "Base configuration (each run then sets `algo.estimator`, `run.seed` and `run.output_dir`; "
        "its own `config.yaml` is in `<algo>-seed<k>/`):", "",
        "```yaml", ctx.config_yaml.rstrip(), "```", "",
        "Per-algorithm overrides:", "",
        *(f"- {algo}: `{' '.join(ov)}`" for algo, ov in ctx.overrides.items()), "",
    ]
    return "\n".join(parts)


def _jsonable(x: Any) -> Any:
    """NaN becomes null: strict JSON has no NaN."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def results_json(runs: list[RunSummary], rows: list[AlgoRow], claims: list[Claim],
                 ctx: ReportContext, config: dict[str, Any]) -> str:
    doc = {
        "command": ctx.command, "config": config, "overrides": ctx.overrides, "device": ctx.device,
        "steps": ctx.steps, "prompts_per_step": ctx.prompts_per_step, "seeds": ctx.seeds,
        "notes": ctx.notes,
        "rows": [dataclasses.asdict(r) for r in rows],
        "claims": [dataclasses.asdict(c) for c in claims],
        "runs": [dataclasses.asdict(r) for r in runs],
    }
    return json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n"
