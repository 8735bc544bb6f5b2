"""Markdown tables of variance-measurement records (:func:`remax_ray.repro.variance.measure_variance`).

Three tables over any number of conditions (task x policy), one row per condition and offset sigma:
what was measured and what it cost; the reward statistics with the paper's condition; each
estimator's gradient variance with its ratio to ReMax's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3g}"


def _with_ci(entry: dict[str, Any], key: str = "value") -> str:
    lo, hi = entry["ci"]
    return f"{_num(entry[key])} [{_num(lo)}, {_num(hi)}]"


def _verdict(condition: dict[str, Any]) -> str:
    """The paper's condition E(r_g - mu)^2 < E mu^2, read off the CI of their difference."""
    lo, hi = condition["ci"]
    word = "yes" if hi < 0 else "no" if lo > 0 else "unclear"
    return f"{word} ({_with_ci(condition)})"


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def render_variance_markdown(results: Sequence[dict[str, Any]]) -> str:
    """The three tables for ``results`` (records as measure_variance returns or writes them)."""
    lines = ["### Conditions", "",
             "| task | policy | prompts x draws | parameters measured | sketch k | wall (s) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        p = r["params"]
        wall = r["wall_s"]
        lines.append(f"| {r['task']} | {r['policy']['label']} | {r['prompts']} x {r['draws']} | "
                     f"{p['spec']}: {_millions(p['count'])} of {_millions(p['model_total'])} ({p['note']}) | "
                     f"{r['sketch']['dim']} | {wall['total']:.0f} (generate {wall['generate']:.0f}, "
                     f"gradients {wall['probe']:.0f}) |")
    lines += ["", "### Reward statistics", "",
              "Unbiased estimates over prompts with 95% bootstrap CIs (resampling prompts); mu(x) is the "
              "prompt's mean sampled reward. The greedy baseline reduces the variance when "
              "E(r_g - mu)^2 < E mu^2 (difference in brackets); Var_x mu is also what a batch-mean "
              "baseline leaves, E_x Var_d r what every baseline leaves.", "",
              "| task | policy | sigma | E r | E r_g | E_x Var_d r | Var_x mu | E(r_g - mu)^2 | E mu^2 | "
              "greedy helps? | corr(r_g, mu) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for block in r["reward_stats"]:
            s = block["stats"]
            cells = [_with_ci(s[k]) for k in ("mean_reward", "mean_greedy_reward", "within", "between",
                                              "greedy_gap2", "mean_sq")]
            lines.append(f"| {r['task']} | {r['policy']['label']} | {block['sigma']:g} | " + " | ".join(cells)
                         + f" | {_verdict(s['condition'])} | {_with_ci(s['corr_greedy_mean'])} |")
    estimators = list(dict.fromkeys(e for r in results for e in r["estimators"]))
    lines += ["", "### Gradient variance", "",
              "E||g - E g||^2 of one batch's gradient (no KL, no optimizer) over the draws, with a 95% "
              "bootstrap CI over draws, and x its ratio to ReMax's (CI from the same resamples).", "",
              "| task | policy | sigma | " + " | ".join(estimators) + " |",
              "|---|---|---|" + "---|" * len(estimators)]
    for r in results:
        for block in r["gradient_variance"]:
            cells = []
            for e in estimators:
                row = block["estimators"].get(e)
                if row is None:
                    cells.append("-")
                    continue
                ratio = row.get("ratio_to_remax")
                lo, hi = row.get("ratio_ci", [math.nan, math.nan])
                cells.append(_with_ci(row, "variance") + ("" if e == "remax" or ratio is None
                                                          else f" x{_num(ratio)} [{_num(lo)}, {_num(hi)}]"))
            lines.append(f"| {r['task']} | {r['policy']['label']} | {block['sigma']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
