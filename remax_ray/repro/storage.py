"""Stored runs: a reproduction's table is filled over several sittings, one complete run at a time.

A run folder (``<out>/<task>/<algo>-seed<k>``) holds the Trainer's ``config.yaml`` and
``metrics.jsonl``, and, written last and atomically, ``summary.json`` (what the run was, on which code
and how busy the machine was). A folder with ``summary.json`` is complete and is never run again; one
without it stopped mid-run and is removed and run again (metrics.jsonl is appended to, so a half
file would mix two runs' numbers). A complete run made with another configuration than the one
planned is refused, naming the first key that differs: its numbers would answer another question.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from remax_ray.config import ConfigError, config_from_dict, to_yaml
from remax_ray.repro.plan import PlannedRun

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
# Where a run wrote and how it showed progress: not what it computed.
IGNORED_KEYS = frozenset({"run.output_dir", "run.progress", "run.save_every", "run.keep_checkpoints"})
# What legitimately differs between the runs of one task (each run's own settings).
PER_RUN_KEYS = frozenset({"algo.estimator", "run.seed", "rollout.samples_per_prompt"})


@dataclass
class StoredRun:
    task: str
    algo: str
    seed: int
    folder: Path
    meta: dict[str, Any]
    """summary.json."""
    config: dict[str, Any]
    """config.yaml as a nested dict."""
    records: list[dict[str, Any]] = field(default_factory=list)
    """metrics.jsonl."""


def is_complete(folder: Path) -> bool:
    return (folder / SUMMARY).is_file()


def write_summary(folder: Path, meta: dict[str, Any]) -> Path:
    """summary.json, atomically (a temporary file renamed over it): its presence marks the run complete."""
    path = folder / SUMMARY
    tmp = folder / (SUMMARY + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(meta, indent=2, allow_nan=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= _flat(v, key + ".") if isinstance(v, dict) else {key: v}
    return out


def normalized(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict read back through the Config dataclasses (types coerced, defaults filled), flat."""
    return _flat(yaml.safe_load(to_yaml(config_from_dict(config))))


def first_difference(stored: dict[str, Any], planned: dict[str, Any], ignore: frozenset[str]) -> str | None:
    """'key: stored X, planned Y' for the first differing key outside ``ignore``; None if equal."""
    a, b = normalized(stored), normalized(planned)
    for key in sorted(set(a) | set(b)):
        if key not in ignore and a.get(key) != b.get(key):
            return f"{key}: stored {a.get(key)!r}, planned {b.get(key)!r}"
    return None


def read_config(folder: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load((folder / CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{folder}: cannot read its {CONFIG} ({e}); delete the folder to run it again") from None


def check_stored(runs: list[PlannedRun], out_dir: str | Path) -> None:
    """Refuse a plan that stored runs contradict: the same run stored with another configuration,
    or another run of the same task stored with other shared settings (the report would mix them)."""
    planned_task = {}
    for run in runs:
        planned = run.cfg.to_dict()
        if is_complete(run.folder):
            _compare(run.folder, read_config(run.folder), planned, IGNORED_KEYS, "the planned run")
        planned_task.setdefault(run.task, (run, planned))
    for task, (run, planned) in planned_task.items():
        for folder in complete_folders(Path(out_dir) / task):
            _compare(folder, read_config(folder), planned, IGNORED_KEYS | PER_RUN_KEYS,
                     f"the planned runs of {task}")


def _compare(folder: Path, stored: dict[str, Any], other: dict[str, Any], ignore: frozenset[str],
             what: str) -> None:
    try:
        difference = first_difference(stored, other, ignore)
    except ConfigError as e:
        raise ConfigError(f"{folder}/{CONFIG} is not a configuration of this version ({e}); "
                          "choose another --out, or delete that run folder to run it again") from None
    if difference is not None:
        raise ConfigError(f"{folder} was stored with another configuration than {what} ({difference}); "
                          "choose another --out, or delete that run folder to run it again")


def pending(runs: list[PlannedRun]) -> list[PlannedRun]:
    """The runs still to make; stored ones are skipped, a folder left by a run that stopped is removed."""
    todo = []
    for run in runs:
        if is_complete(run.folder):
            log.info("repro: %s is stored (%s); skipped", run.label, run.folder / SUMMARY)
            continue
        if run.folder.exists():
            log.warning("repro: %s has no %s (the run stopped before finishing); removing %s and "
                        "running it again", run.label, SUMMARY, run.folder)
            shutil.rmtree(run.folder)
        todo.append(run)
    return todo


def complete_folders(task_dir: Path) -> list[Path]:
    return sorted(p.parent for p in task_dir.glob(f"*-seed*/{SUMMARY}"))


def read_run(folder: Path) -> StoredRun:
    meta = json.loads((folder / SUMMARY).read_text())
    lines = (folder / METRICS).read_text().splitlines() if (folder / METRICS).exists() else []
    return StoredRun(meta["task"], meta["algo"], int(meta["seed"]), folder, meta, read_config(folder),
                     [json.loads(x) for x in lines if x.strip()])


def stored_runs(out_dir: str | Path) -> dict[str, list[StoredRun]]:
    """Every complete run under ``out_dir``, by task; each task's runs must share their settings."""
    by_task: dict[str, list[StoredRun]] = {}
    for task_dir in sorted(p for p in Path(out_dir).iterdir() if p.is_dir()) if Path(out_dir).is_dir() else []:
        runs = [read_run(f) for f in complete_folders(task_dir)]
        for r in runs[1:]:
            _compare(r.folder, r.config, runs[0].config, IGNORED_KEYS | PER_RUN_KEYS, str(runs[0].folder))
        if runs:
            by_task[task_dir.name] = runs
    return by_task
