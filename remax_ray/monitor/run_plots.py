"""``remax-ray plot RUN_DIR``: PNG curves of one run from its metrics.jsonl (reward, KL, seconds per
phase, |Δlogp|), in the style of the repro report's figure (remax_ray.monitor.plots)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from remax_ray.monitor.metric_names import is_number

Records = list[dict[str, Any]]
PHASES = ("generate_s", "score_s", "learn_s", "sync_s")


class PlotError(ValueError):
    """The folder holds nothing to plot; the message says what is missing."""


def load_records(run_dir: str | Path) -> Records:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        hint = " (it is a metrics file; pass its folder)" if Path(run_dir).name == "metrics.jsonl" else ""
        raise PlotError(f"no metrics.jsonl in {run_dir}{hint}: pass a run folder, the run.output_dir of "
                        "`remax-ray train` (default runs/default)")
    records, lines = [], path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a driver killed mid-write leaves a torn last line
                if n < len(lines):
                    raise PlotError(f"{path}:{n} is not JSON") from None
    if not records:
        raise PlotError(f"{path} has no records yet: the run logs its first one after the first evaluation")
    return records


def series(records: Records, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the records holding a finite ``key``; a step logged twice keeps its last value."""
    by_step = {r["step"]: float(r[key]) for r in records if is_number(r.get(key)) and math.isfinite(r[key])}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def _figure(title: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")  # no display on the machines this runs on
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> Path:
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reward(records: Records, path: Path) -> Path | None:
    lines = [("reward_sample", "sampled (mean of the step)", dict(lw=2)),
             ("reward_greedy", "greedy (ReMax's baseline)", dict(lw=1.2, alpha=0.8)),
             ("eval_greedy_reward", "held-out greedy eval", dict(ls="--", marker="o", ms=5, lw=1))]
    if not any(series(records, key)[0] for key, _, _ in lines):
        return None
    plt, fig, ax = _figure("reward", "reward")
    for i, (key, label, style) in enumerate(lines):
        steps, values = series(records, key)
        if steps:
            ax.plot(steps, values, color=plt.get_cmap("tab10").colors[i], label=label, **style)
    ax.legend(fontsize=8, loc="best")
    return _save(plt, fig, path)


def plot_kl(records: Records, path: Path) -> Path | None:
    steps, kl = series(records, "kl")
    if not steps:
        return None
    plt, fig, ax = _figure("KL(policy || reference), mean per token", "KL (nats per token)")
    ax.plot(steps, kl, color=plt.get_cmap("tab10").colors[3], lw=2, marker="." if len(steps) < 30 else None)
    return _save(plt, fig, path)


def plot_phases(records: Records, path: Path) -> Path | None:
    """Stacked seconds of each phase per step: the height is the step's time, the bands where it went."""
    rows = sorted((r for r in records if all(is_number(r.get(p)) for p in PHASES)), key=lambda r: r["step"])
    if not rows:
        return None
    plt, fig, ax = _figure("seconds per phase", "seconds")
    steps = [r["step"] for r in rows]
    bands = [[r[p] for r in rows] for p in PHASES]
    labels = [p.removesuffix("_s") for p in PHASES]
    if len(steps) == 1:  # a stack of areas needs two x values; one step is a stacked bar
        bottom = 0.0
        for band, label in zip(bands, labels):
            ax.bar(steps, band, bottom=bottom, label=label, width=0.5)
            bottom += band[0]
        ax.set(xticks=steps, xlim=(steps[0] - 1, steps[0] + 1))
    else:
        ax.stackplot(steps, bands, labels=labels, alpha=0.85)
    # Headroom above the tallest step keeps the legend off the bands.
    ax.set_ylim(0, 1.2 * max(sum(r[p] for p in PHASES) for r in rows))
    ax.legend(fontsize=8, loc="upper left", ncols=len(PHASES))
    return _save(plt, fig, path)


def plot_logp_diff(records: Records, path: Path) -> Path | None:
    steps, diff = series(records, "logp_diff")
    if not steps:
        return None
    plt, fig, ax = _figure("generator vs learner: mean |Δlog-prob| per token (rises if weight sync breaks)",
                           "|Δlogp| (nats)")
    ax.title.set_fontsize(10)
    ax.plot(steps, diff, color=plt.get_cmap("tab10").colors[4], lw=2, marker="." if len(steps) < 30 else None)
    if all(v > 0 for v in diff) and max(diff) / min(diff) > 100:
        ax.set_yscale("log")  # a broken sync jumps by orders of magnitude
    else:
        ax.set_ylim(bottom=0)  # small values stay visibly small
    return _save(plt, fig, path)


PLOTS = {"reward.png": plot_reward, "kl.png": plot_kl, "phases.png": plot_phases, "logp_diff.png": plot_logp_diff}


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> dict[str, Path | None]:
    """Write every plot that the run has data for into ``out`` (default RUN_DIR/plots);
    {file name: path, or None where the run logged nothing for it}."""
    records = load_records(run_dir)
    folder = Path(out) if out else Path(run_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    return {name: draw(records, folder / name) for name, draw in PLOTS.items()}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="write PNG curves of a run (reward, KL, seconds per phase, |Δlogp|)",
                       description="Reads RUN_DIR/metrics.jsonl; writes reward.png, kl.png, phases.png and "
                                   "logp_diff.png into RUN_DIR/plots (or --out). Works while the run goes on.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (run.output_dir), e.g. runs/default")
    p.add_argument("--out", help="folder for the PNG files (default: RUN_DIR/plots)")


def main(args: argparse.Namespace) -> int:
    try:
        written = plot_run(args.run_dir, args.out)
    except PlotError as e:
        print(f"remax-ray plot: {e}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(path if path else f"{name}: skipped, the run logged no data for it yet")
    return 0
