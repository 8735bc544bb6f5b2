"""What a run's seconds and bytes were measured on: how busy the machine was with work that was not
the run's own (the "other load"), and which code produced the run.

Seconds per step and peak memory are worth comparing only between runs that had the machine to
themselves. The other load of a run is the CPU time spent by everything else during it, as a share of
the CPU time the machine had:

    other = (busy CPU seconds of the whole machine - CPU seconds of this process tree) / (wall x cores)

The process tree is the driver and every descendant, alive or already reaped (a process's
``children_user/system`` hold the CPU time of the children it has waited for), which covers the
Ray processes when the driver started Ray itself. A run on a Ray cluster that was already running
counts that cluster as other load, so it is never called quiet: its seconds are not this run's alone.
The measure sees CPUs only: another process on the same GPU is not seen.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

QUIET_LOAD = 0.05
"""A run is quiet when other work used under 5% of the machine's CPU time during it (on the 2-core
machine: one core busy 1 s in every 10 s). A CPU-bound run competing with that much work is slowed by
at most about as much, small beside the 1.6-2.2x the paper reports; a fixed choice, made before
any run, not fitted to the results."""


@dataclass(frozen=True)
class CpuSample:
    wall_s: float
    """A monotonic clock."""
    busy_s: float
    """Non-idle CPU seconds of the whole machine, summed over cores, since boot."""
    tree_s: float
    """CPU seconds of this process tree (user + system, with reaped descendants)."""


def other_load(before: CpuSample, after: CpuSample, cores: int) -> float:
    """The share of the machine's CPU time that other work used between two samples, in [0, 1]."""
    wall = after.wall_s - before.wall_s
    if wall <= 0 or cores < 1:
        return float("nan")
    other = (after.busy_s - before.busy_s) - (after.tree_s - before.tree_s)
    return min(max(other / (wall * cores), 0.0), 1.0)


def is_quiet(load: float | None) -> bool:
    return load is not None and load == load and load < QUIET_LOAD


def busy_seconds(times) -> float:
    """psutil.cpu_times()' non-idle fields. guest time is already inside user time on Linux, and
    iowait is idle time, so both are left out; steal (a hypervisor giving the core to another
    machine) is counted, as it is time this run could not have."""
    fields = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(getattr(times, f, 0.0) for f in fields))


def tree_seconds(process) -> float:
    import psutil

    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # ended between the listing and the read: its parent's children_* count it later
        total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
    return total


def sample() -> CpuSample:
    import psutil

    return CpuSample(time.monotonic(), busy_seconds(psutil.cpu_times()), tree_seconds(psutil.Process()))


def cores() -> int:
    return os.cpu_count() or 1


def code_version() -> str:
    """The git commit of the code that is running ("+dirty" with uncommitted changes to the package,
    new files included), or "unknown" outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        # Only the package counts: an untracked run folder elsewhere changes no code.
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "remax_ray"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
