"""Reward curves of several algorithms on one figure: against step and against wall-clock time."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

Records = list[dict[str, Any]]


def step_series(records: Records) -> tuple[list[int], list[float], list[float]]:
    """(step, seconds since fit start at the end of the step, reward_sample) of the step records."""
    steps = sorted((r for r in records if "reward_sample" in r and "step_s" in r), key=lambda r: r["step"])
    clock, total = [], 0.0
    for r in steps:
        # Older metrics lack elapsed_s; summed step times then stand in (they omit evaluations).
        total += r["step_s"]
        clock.append(r.get("elapsed_s", total))
    return [r["step"] for r in steps], clock, [r["reward_sample"] for r in steps]


def eval_series(records: Records) -> tuple[list[int], list[float], list[float]]:
    """(step, seconds, eval_greedy_reward) of the evaluations.

    An evaluation logged at step K ran after step K-1 ended, so without its own elapsed_s it is
    placed at that step's elapsed_s (0 before training).
    """
    steps, clock, _ = step_series(records)
    end_of = dict(zip(steps, clock))
    evals = sorted((r for r in records if "eval_greedy_reward" in r), key=lambda r: r["step"])
    times = [r.get("elapsed_s", end_of.get(r["step"] - 1, 0.0)) for r in evals]
    return [r["step"] for r in evals], times, [r["eval_greedy_reward"] for r in evals]


def _mean_over_seeds(series: Sequence[tuple[list, list[float], list[float]]]):
    """Mean x-time and reward per step over the seeds that logged that step."""
    by_step: dict[int, list[tuple[float, float]]] = {}
    for steps, clock, reward in series:
        for s, t, r in zip(steps, clock, reward):
            by_step.setdefault(s, []).append((t, r))
    keys = sorted(by_step)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return (keys, [mean([t for t, _ in by_step[k]]) for k in keys],
            [mean([r for _, r in by_step[k]]) for k in keys])


def plot_rewards(runs: Mapping[str, Sequence[Records]], path: str | Path,
                 title: str = "reward per step") -> Path:
    """Thin lines: each seed's sampled reward; bold: the mean over seeds; markers: held-out evals."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the machines this runs on
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    colors = plt.get_cmap("tab10").colors
    for i, (algo, seeds) in enumerate(runs.items()):
        color = colors[i % len(colors)]
        train = [step_series(r) for r in seeds]
        evals = [eval_series(r) for r in seeds]
        for steps, clock, reward in train:
            by_step.plot(steps, reward, color=color, lw=0.7, alpha=0.35)
            by_time.plot(clock, reward, color=color, lw=0.7, alpha=0.35)
        steps, clock, reward = _mean_over_seeds(train)
        by_step.plot(steps, reward, color=color, lw=2, label=f"{algo} (sampled, mean of {len(seeds)})")
        by_time.plot(clock, reward, color=color, lw=2, label=algo)
        steps, clock, reward = _mean_over_seeds(evals)
        by_step.plot(steps, reward, color=color, ls="--", marker="o", ms=5, lw=1,
                     label=f"{algo} (held-out greedy eval)")
        by_time.plot(clock, reward, color=color, ls="--", marker="o", ms=5, lw=1)
    by_step.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_step.set(xlabel="step", ylabel="reward", title=title)
    by_time.set(xlabel="seconds since training start", ylabel="reward", title="reward against wall-clock")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
    by_step.legend(fontsize=7, loc="best")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reward_kl(runs: Mapping[str, Sequence[Sequence[tuple[float, float, float]]]], path: str | Path,
                   target_kl: float | None = None, title: str = "held-out reward against KL") -> Path:
    """Reward against KL to the reference, one panel for greedy and one for sampled responses.

    ``runs``: algorithm -> one path per seed, each a list of (kl, greedy reward, sampled reward), one
    point per evaluation in step order. ``target_kl``: a dotted line where the runs are compared."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    colors = plt.get_cmap("tab10").colors
    for i, (algo, paths) in enumerate(runs.items()):
        color = colors[i % len(colors)]
        for j, path_ in enumerate(paths):
            kl = [p[0] for p in path_]
            for ax, col in zip(axes, (1, 2)):
                ax.plot(kl, [p[col] for p in path_], color=color, lw=1, alpha=0.6, marker="o", ms=3,
                        label=f"{algo} ({len(paths)} seeds)" if j == 0 else None)
    for ax, what in zip(axes, ("greedy", "sampled")):
        if target_kl is not None and target_kl == target_kl:
            ax.axvline(target_kl, color="grey", ls=":", lw=1)
        ax.set(xlabel="KL to the reference (per token, training samples)", ylabel=f"{what} reward",
               title=f"{title}: {what}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
