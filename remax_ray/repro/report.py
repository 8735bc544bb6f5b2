"""``results.md`` and ``results.json``: provenance, then per task the rewards with their intervals,
the verdicts, the reward at matched KL, and memory and speed beside the paper's figures."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

from remax_ray.repro.arms import MEASURES, ArmRow, TaskResult
from remax_ray.repro.claims import (
    EFFECT_OF_INTEREST,
    NONINFERIORITY_MARGIN,
    PLANNED_SEEDS,
    ClaimVerdict,
    ResourceRow,
    Verdict,
    claim_verdicts,
    resource_rows,
    reward_verdicts,
    variance_ratio,
)
from remax_ray.repro.machine import QUIET_LOAD
from remax_ray.repro.paper import MEMORY_FIGURES, SOURCES, SPEED_FIGURES, departures
from remax_ray.repro.plan import MIN_EVAL_PROMPTS, MIN_EVAL_SAMPLES
from remax_ray.repro.stats import MAX_SEEDS, Interval
from remax_ray.repro.summary import PHASES
from remax_ray.repro.variance_report import render_variance_markdown

MIB = 1024 ** 2
LOADED = "—, loaded"


@dataclass
class ReportContext:
    command: str
    """The command that rendered this report (the runs' own commands are in their summary.json)."""
    commit: str
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """task -> the configuration of its first stored run (a nested dict)."""
    overrides: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """task -> algorithm -> its overrides on top of the task's base configuration."""
    variance: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """task -> its stored variance records (:mod:`remax_ray.repro.conditions`), base policy first."""


def _f(x: float | None, spec: str = ".4f") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def ci(iv: Interval, spec: str = ".3f") -> str:
    if iv.n == 0:
        return "n/a"
    if iv.n < 2:
        return f"{_f(iv.mean, spec)} (n=1)"
    return f"{_f(iv.mean, spec)} [{_f(iv.lo, spec)}, {_f(iv.hi, spec)}]"


def _needed(n: int | None) -> str:
    return "n/a" if n is None else (f"> {MAX_SEEDS}" if n > MAX_SEEDS else str(n))


def _quiet_cell(arm: ArmRow, value: float, fmt) -> str:
    if not arm.quiet_seeds:
        return LOADED
    return fmt(value) if math.isfinite(value) else "n/a"


def reward_table(result: TaskResult) -> str:
    head = ["arm", "samples/prompt", "seeds", "reward before", *MEASURES.values(), "KL (last 1/4)", "final KL"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in result.arms:
        cells = [a.algo, str(a.samples_per_prompt), ",".join(map(str, a.seeds)), _f(a.eval_before, ".3f"),
                 *(ci(a.intervals[m]) for m in MEASURES), _f(a.kl, ".3g"), _f(a.final_kl, ".3g")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict_table(verdicts: list[Verdict]) -> str:
    lines = ["| claim | measured on | paired seeds | ReMax − other [95% CI] | sd of differences | "
             f"seeds needed for {EFFECT_OF_INTEREST:g} | verdict |", "|---|---|---|---|---|---|---|"]
    for v in verdicts:
        claim = v.claim if v.paper else f"{v.claim} (control)"
        lines.append(f"| {claim} | {MEASURES.get(v.measure, 'every measure')} | {','.join(map(str, v.seeds)) or '-'} | "
                     f"{ci(v.diff, '+.3f')} | {_f(v.diff.sd, '.3f')} | {_needed(v.seeds_needed)} | **{v.verdict}** |")
    return "\n".join(lines)


def claim_table(claims: list[ClaimVerdict]) -> str:
    lines = ["| claim | seeds paired on every measure | verdict | why |", "|---|---|---|---|"]
    for c in claims:
        claim = c.claim if c.paper else f"{c.claim} (control)"
        lines.append(f"| {claim} | {','.join(map(str, c.seeds)) or '-'} | **{c.verdict}** | {c.why} |")
    return "\n".join(lines)


def resources_table(rows: list[ResourceRow]) -> str:
    lines = ["| measure | ours | measured | the paper (quoted) |", "|---|---|---|---|"]
    for r in rows:
        ours = (f"{r.ours:.0%}" if "saved" in r.measure else f"{r.ours:.2f}x") if math.isfinite(r.ours) else LOADED
        paper = "; ".join(short for *_, short in r.paper)
        lines.append(f"| {r.measure} | {ours} | {r.detail} | {paper} |")
    return "\n".join(lines)


def cost_table(result: TaskResult) -> str:
    head = ["arm", "quiet runs", *PHASES, "state MiB", "peak RSS MiB", "CUDA peak MiB", "grad-norm var"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    mib = lambda x: f"{x / MIB:.1f}"  # noqa: E731
    for a in result.arms:
        cells = [a.algo, f"{len(a.quiet_seeds)}/{len(a.seeds)}",
                 *(_quiet_cell(a, a.phase_s.get(p, math.nan), lambda x: f"{x:.3f}") for p in PHASES),
                 _f(a.learner_state_bytes / MIB, ".1f"), _quiet_cell(a, a.learner_peak_rss_bytes, mib),
                 _quiet_cell(a, a.learner_cuda_peak_bytes, mib), _f(a.grad_norm_var, ".3g")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _warnings(result: TaskResult) -> list[str]:
    out = []
    small = sorted({(r.meta.get("eval_prompts"), r.meta.get("eval_samples")) for r in result.runs
                    if (r.meta.get("eval_prompts") or 0) < MIN_EVAL_PROMPTS
                    or (r.meta.get("eval_samples") or 0) < MIN_EVAL_SAMPLES}, key=str)
    for prompts, samples in small:
        out.append(f"**Evaluation below the repro's minimum** ({MIN_EVAL_PROMPTS} prompts x {MIN_EVAL_SAMPLES} "
                   f"samples): some runs evaluated {prompts} prompts x {samples} samples.")
    if not math.isfinite(result.target_kl):
        out.append("No common KL: a run has no KL measurement (algo.kl_coef=0) or a final KL estimate "
                   "not above 0 (a policy that barely moved, or estimator noise), so the matched-KL "
                   "columns are n/a.")
    return out


def task_section(result: TaskResult, ctx: ReportContext) -> list[str]:
    verdicts = reward_verdicts(result)
    t = result.task
    overrides = ctx.overrides.get(t, {})
    warnings = [f"- {w}" for w in _warnings(result)]
    return [
        f"## Task: {t}", "", *warnings, *([""] if warnings else []),
        "### Held-out reward", "",
        "Mean over seeds [95% t-interval]. The matched KL is "
        f"{_f(result.target_kl, '.4g')} (the smallest final KL among the runs): each run's reward where its "
        f"reward–KL path first reaches it (figure: [{t}/reward_kl.png]({t}/reward_kl.png); reward per "
        f"step: [{t}/reward.png]({t}/reward.png)).", "",
        reward_table(result), "",
        "### Verdicts", "",
        f"Paired by seed (same prompts, held-out set and initial policy). Non-inferiority margin "
        f"{NONINFERIORITY_MARGIN:g}; superiority against 0; judged at {PLANNED_SEEDS} paired seeds; see "
        "*Margins* below. One verdict per claim over the four measures:", "",
        claim_table(claim_verdicts(result)), "",
        "Each measure on its own (95% intervals):", "",
        verdict_table(verdicts), "",
        "### Memory and speed beside the paper's figures", "",
        f"Ratios only; no threshold of ours. Seconds and measured memory come from quiet runs only (other "
        f"load < {QUIET_LOAD:.0%} of the machine's CPU time); the learner-state bytes are an exact count.", "",
        resources_table(resource_rows(result)) or "(needs remax and ppo runs)", "",
        f"Gradient-norm variance across steps, REINFORCE / ReMax: {_f(variance_ratio(result), '.3g')} "
        "(a proxy of the estimators' variance, which also moves as the policy trains; no verdict).", "",
        *variance_section(ctx.variance.get(t, [])),
        "### Time and memory per arm", "",
        cost_table(result), "",
        "### Configuration", "",
        f"A stored run's `config.yaml` (ReMax's where stored; each run's own is in `{t}/<algo>-seed<k>/`); "
        "per-arm overrides on top of the task's base:", "",
        *(f"- {algo}: `{' '.join(ov)}`" for algo, ov in overrides.items()), "",
        "```yaml", yaml.safe_dump(ctx.configs.get(t, {}), sort_keys=False).rstrip(), "```", "",
    ]


def variance_section(records: list[dict[str, Any]]) -> list[str]:
    """The paper's condition and each estimator's gradient variance at fixed policies (paired draws)."""
    head = ["### The paper's condition at fixed parameters", ""]
    if not records:
        return [*head, "(not measured yet: `remax-ray repro` measures it after the training runs)", ""]
    # The variance tables come with level-3 headings of their own; one level down here.
    return [*head, ("\n" + render_variance_markdown(records)).replace("\n### ", "\n#### ").strip(), ""]


def _counted(values: list[str]) -> str:
    return "; ".join(f"`{v}` ({n} runs)" for v, n in Counter(values).most_common())


def provenance(results: list[TaskResult], ctx: ReportContext) -> list[str]:
    runs = [r for res in results for r in res.runs]
    per_task = [departures(ctx.configs.get(res.task, {}), _counted([r.meta.get("device", "?") for r in res.runs]))
                for res in results]
    rows = []
    for i, row in enumerate(per_task[0] if per_task else []):
        ours = {res.task: d[i][1] for res, d in zip(results, per_task)}
        cell = row[1] if len(set(ours.values())) == 1 else "; ".join(f"{t}: {v}" for t, v in ours.items())
        rows.append(f"| {row[0]} | {cell} | {row[2]} | {row[3]} |")
    figures = [f"| {w} | {f} | {s} |" for w, f, s, _ in (*MEMORY_FIGURES, *SPEED_FIGURES)]
    return [
        "## Provenance", "",
        f"- code of the runs: {_counted([r.meta.get('commit', 'unknown') for r in runs]) or 'none stored'}",
        f"- commands that made the runs: {_counted([r.meta.get('command', '?') for r in runs]) or 'none'}",
        f"- this report: `{ctx.command}` at commit `{ctx.commit}`, from every complete run stored under "
        "the output folder", "",
        "### Departures from the paper and the authors' code", "",
        "Sources: " + "; ".join(f"*{k}* = {v}" for k, v in SOURCES.items()) + ".", "",
        "| setting | ours | the paper / the authors' code | source |", "|---|---|---|---|", *rows, "",
        "### The paper's figures", "",
        "| what | figure | source |", "|---|---|---|", *figures, "",
    ]


MARGINS = f"""\
- Effect of interest {EFFECT_OF_INTEREST:g} reward units; non-inferiority margin {NONINFERIORITY_MARGIN:g}
  (`remax_ray/repro/claims.py`, fixed before any run, with the reasons). "ReMax >= PPO": supported when
  the 95% interval of ReMax − PPO lies above −{NONINFERIORITY_MARGIN:g}, contradicted when it lies below.
  "ReMax > X": supported above 0, contradicted below 0. Anything else, or fewer than
  {PLANNED_SEEDS} paired seeds (the planned number: judging every partial table would be optional
  stopping), is inconclusive; the interval is shown from two seeds on.
- A claim's verdict over the four measures: supported when every measure supports it at 95%;
  contradicted when one measure contradicts it at 98.75% (Bonferroni over the four); else
  inconclusive.
- seeds needed: the pairs a two-sided paired t-test (α = 0.05, power 0.8) would need to detect a
  difference of {EFFECT_OF_INTEREST:g} at the observed sd of the differences.
- KL: the training step's `kl` (mean per-token estimate on that step's samples) of the policy each
  evaluation evaluated; the final evaluation takes the last step's (one update earlier).
"""


def render_markdown(results: list[TaskResult], ctx: ReportContext) -> str:
    parts = ["# ReMax reproduction (arXiv 2310.10505)", "", *provenance(results, ctx)]
    for res in results:
        parts += task_section(res, ctx)
    for task in sorted(set(ctx.variance) - {res.task for res in results}):  # measured, not trained yet
        parts += [f"## Task: {task}", "", "No training run of this task is stored yet.", "",
                  *variance_section(ctx.variance[task])]
    return "\n".join([*parts, "## Margins and definitions", "", MARGINS])


def _jsonable(x: Any) -> Any:
    """NaN becomes null: strict JSON has no NaN."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def results_json(results: list[TaskResult], ctx: ReportContext) -> str:
    doc = {"command": ctx.command, "commit": ctx.commit, "quiet_load": QUIET_LOAD,
           "effect_of_interest": EFFECT_OF_INTEREST, "noninferiority_margin": NONINFERIORITY_MARGIN,
           "planned_seeds": PLANNED_SEEDS,
           "tasks": {res.task: {"target_kl": res.target_kl, "config": ctx.configs.get(res.task),
                                "overrides": ctx.overrides.get(res.task),
                                "arms": [dataclasses.asdict(a) for a in res.arms],
                                "verdicts": [dataclasses.asdict(v) for v in reward_verdicts(res)],
                                "claims": [dataclasses.asdict(c) for c in claim_verdicts(res)],
                                "resources": [dataclasses.asdict(r) for r in resource_rows(res)],
                                "variance_ratio": variance_ratio(res),
                                "variance_conditions": ctx.variance.get(res.task, []),
                                "runs": [dataclasses.asdict(r) for r in res.runs]}
                     for res in results}}
    trained = {res.task for res in results}
    doc["variance_only_tasks"] = {t: recs for t, recs in ctx.variance.items() if t not in trained}
    return json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n"
