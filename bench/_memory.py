"""Memory of a whole run: proportional set size (PSS) summed over a process tree, by role.

PSS splits each shared page between the processes that map it, so the sum over processes counts
every resident page once (RSS would count the shared libraries, the object store and the weight
arena once per process). A sampler thread reads ``/proc/<pid>/smaps_rollup`` of the root and all
of its descendants and keeps the largest total it saw, with that sample's split by role.
"""

from __future__ import annotations

import threading

import psutil

# First match wins: (substring of the process name or command line, role).
_ROLES = (
    ("ray::LearnerShell", "learner"),
    ("ray::GeneratorShell", "generator actor"),
    ("ray::RewardShell", "reward actor"),
    ("VLLM::EngineCore", "vLLM engine core"),
    ("VLLM::Worker", "vLLM worker"),
    ("ray::IDLE", "Ray idle workers"),
    ("ray::", "Ray system (agents)"),
    ("ray-dashboard", "Ray system (dashboard)"),
    ("dashboard.py", "Ray system (dashboard)"),
    ("gcs_server", "Ray system (GCS, raylet, monitors)"),
    ("raylet", "Ray system (GCS, raylet, monitors)"),
    ("monitor.py", "Ray system (GCS, raylet, monitors)"),
    ("log_monitor", "Ray system (GCS, raylet, monitors)"),
)


def role(proc: psutil.Process, root: int) -> str:
    if proc.pid == root:
        return "driver"
    try:
        text = proc.name() + " " + " ".join(proc.cmdline()[:4])
    except psutil.Error:
        return "other"
    return next((r for key, r in _ROLES if key in text), "other")


def pss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _by_role(root: int, measure) -> dict[str, float]:
    """``measure(process)`` summed by role over ``root`` and all its descendants, now."""
    out: dict[str, float] = {}
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        try:
            out[role(p, root)] = out.get(role(p, root), 0) + measure(p)
        except (OSError, psutil.Error):  # exited between the listing and the read
            pass
    return out


def tree_pss(root: int) -> dict[str, int]:
    """PSS per role over ``root`` and all its descendants, now."""
    return _by_role(root, lambda p: pss_bytes(p.pid))


class PeakSampler:
    """Samples ``tree_pss(root)`` every ``period_s`` in a thread; ``peak`` is the sample with the
    largest total (the split is one moment's, so its parts add up)."""

    def __init__(self, root: int, period_s: float = 0.5):
        self.root, self.period_s = root, period_s
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = tree_pss(self.root)
            if sum(sample.values()) > sum(self.peak.values()):
                self.peak = sample
            self._stop.wait(self.period_s)


def report(peak: dict[str, int], title: str) -> None:
    total = sum(peak.values())
    print(f"\n{title}: peak PSS {total / 2**30:.2f} GiB")
    for name, size in sorted(peak.items(), key=lambda kv: -kv[1]):
        print(f"  {name:36s} {size / 2**30:6.2f} GiB")


def tree_cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each role's processes under ``root``; the
    difference of two readings is what each role used in between (a process that exited in between
    drops out)."""
    return _by_role(root, lambda p: sum(p.cpu_times()[:2]))
