"""Checkpoint folders: atomic writes, a ``latest`` pointer, keep-last-K, and what ``--resume`` means.

Layout under ``<run.output_dir>/checkpoints/``::

    step-000012/   HF folder (safetensors + tokenizer) + trainer_state.pt + run_state.json + config.yaml
    latest         text file: the name of the newest complete checkpoint folder

Invariant: a folder is renamed into place only once it is complete, ``latest`` is replaced atomically
and only ever names such a folder, and an older folder is deleted only after ``latest`` names a newer
one. So at every moment (a SIGKILL included) the newest complete checkpoint is on disk, whole.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

LATEST = "latest"
LEARNER_STATE = "trainer_state.pt"
RUN_STATE = "run_state.json"
CONFIG = "config.yaml"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class ResumeError(ValueError):
    """``--resume`` names nothing that can be resumed (reported before any actor starts)."""


def root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def step_folder(output_dir: str | Path, step: int) -> Path:
    return root(output_dir) / f"step-{step:06d}"


def _fsync_tree(folder: Path) -> None:
    # Without fsync a power cut after the rename can leave a folder whose files are empty.
    for path in [*folder.rglob("*"), folder]:
        if path.is_file() or path.is_dir():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def staging_folder(folder: Path, *, shared: bool = False, create: bool = True) -> Path:
    """The hidden sibling a checkpoint is written into before :func:`publish` renames it in. A
    ``shared`` one has a fixed name, so learner ranks in other processes find it; ``create`` (the
    one process that should) makes it afresh."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not shared:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}.", dir=folder.parent))
    else:
        tmp = folder.parent / f".tmp-{folder.name}.ranks"
        if create:
            shutil.rmtree(tmp, ignore_errors=True)  # a killed run's leftover
            tmp.mkdir()
    if create:
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a checkpoint is meant to be shared
    return tmp


def publish(tmp: Path, folder: Path) -> Path:
    """fsync the complete staging folder, then rename it to ``folder`` in one step."""
    _fsync_tree(tmp)
    os.rename(tmp, folder)
    return folder


def write_atomically(folder: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` into a hidden sibling folder, then rename it to ``folder`` in one step.

    A folder that already exists was complete when it was renamed in, and holds the same step's
    state, so it is kept as it is rather than replaced (replacing it would open a moment in which
    neither copy is whole)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        return folder
    tmp = staging_folder(folder)
    try:
        write(tmp)
        publish(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def set_latest(folder: Path) -> None:
    """Point ``latest`` at ``folder`` (a complete checkpoint) with an atomic replace."""
    pointer = folder.parent / LATEST
    tmp = folder.parent / f".{LATEST}.tmp"
    tmp.write_text(folder.name + "\n")
    os.replace(tmp, pointer)


def latest(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / LATEST
    if not pointer.exists():
        return None
    folder = ckpt_root / pointer.read_text().strip()
    return folder if (folder / LEARNER_STATE).exists() else None


def step_folders(ckpt_root: Path) -> list[Path]:
    """Complete step folders, oldest first."""
    if not ckpt_root.exists():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def prune(ckpt_root: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` step folders (never the one ``latest`` names), and the
    half-written temporary folders a killed process left behind. Returns what was deleted."""
    newest = latest(ckpt_root)
    folders = step_folders(ckpt_root)
    doomed = [p for p in folders[: max(0, len(folders) - keep)] if p != newest] if keep > 0 else []
    doomed += [p for p in ckpt_root.glob(".tmp-*") if p.is_dir()]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed


def resolve(spec: str, output_dir: str | Path) -> Path:
    """``latest`` -> the newest checkpoint of ``output_dir``; a run folder -> its newest checkpoint;
    a checkpoint folder -> itself. Anything else is a ResumeError naming what was looked at."""
    if spec == LATEST:
        found = latest(root(output_dir))
        if found is None:
            raise ResumeError(f"--resume latest: no checkpoint in {root(output_dir)} (run.output_dir="
                              f"{output_dir}); pass a checkpoint folder, or train without --resume")
        return found
    path = Path(spec)
    if (path / LEARNER_STATE).exists():
        return path
    for candidate in (root(path), path):
        found = latest(candidate)
        if found is not None:
            return found
    raise ResumeError(f"--resume {spec}: not a checkpoint folder (no {LEARNER_STATE}), nor a run or "
                      "checkpoints folder with a 'latest' pointer")


def discard_after(folder: Path) -> list[Path]:
    """Resuming from ``folder``: point ``latest`` at it, then delete the step folders after it.

    They belong to the abandoned continuation; kept, a later save of the same step would find the
    name taken and keep the stale state."""
    set_latest(folder)
    match = _STEP_DIR.match(folder.name)
    if not match:
        return []
    newer = [p for p in step_folders(folder.parent) if int(_STEP_DIR.match(p.name).group(1)) > int(match.group(1))]
    for p in newer:
        shutil.rmtree(p, ignore_errors=True)
    return newer
