"""Where a run starts: fresh (into an unused folder, or one the user said to overwrite) or from a
checkpoint (its driver state restored, metrics.jsonl and samples.jsonl cut back to what that
checkpoint had seen); ``--resume auto`` picks between the two (:func:`auto_start`)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from remax_ray.assets import home
from remax_ray.config import Config, ConfigError
from remax_ray.data.prompts import PromptSplits
from remax_ray.driver.run_state import RunState, data_order
from remax_ray.learner import checkpoint
from remax_ray.learner.checkpoint import ResumeError
from remax_ray.monitor import samples
from remax_ray.monitor.metrics import COUNTED_FILE, MetricsSink

log = logging.getLogger(__name__)

# What a finished or running run leaves in its folder; their presence means "used".
_RUN_FILES = ("metrics.jsonl", "checkpoints", "tensorboard", COUNTED_FILE, samples.FILE)


def initial_state(cfg: Config, model_path: str, splits: PromptSplits, resume_from: Path | None,
                  overwrite: bool, *, overlap: bool) -> RunState:
    """``overlap``: rollout.overlap as resolved for this run's placement (``resolve_overlap``)."""
    out = Path(cfg.run.output_dir)
    order = data_order(cfg.run.seed, cfg.run.prompts_per_step, cfg.run.dataset, len(splits.train), overlap)
    if resume_from is not None:
        return _resumed(out, resume_from, order)
    used = _used_run_files(out)
    if used and not overwrite:
        raise ConfigError(f"run.output_dir {out} already holds a run ({', '.join(used)}): continue it "
                          "with --resume latest, pick another run.output_dir, or pass --overwrite to "
                          "delete it and start over")
    for name in used:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    reference = home.resolve_model_path(cfg.model.reference_path) if cfg.model.reference_path else model_path
    return RunState(data_order=order, reference_path=str(reference))


def _used_run_files(out: Path) -> list[str]:
    return [name for name in _RUN_FILES if (out / name).exists()]


def auto_start(output_dir: str | Path) -> tuple[str | None, bool]:
    """``--resume auto``, what a restarted entrypoint runs: ``(resume, overwrite)`` for the Trainer.

    The newest complete checkpoint of ``output_dir`` is resumed as ``--resume latest`` would (same
    config checks). Without one, the run starts fresh, over whatever an earlier attempt left: a driver
    that died before its first checkpoint leaves metrics but nothing to continue, and refusing that
    folder would make every retry of the entrypoint fail the same way."""
    out = Path(output_dir)
    found = checkpoint.latest(checkpoint.root(out))
    if found is not None:
        log.info("resume auto: continuing from %s, the newest complete checkpoint in %s", found.name, out)
        return checkpoint.LATEST, False
    used = _used_run_files(out)
    if used:
        log.warning("resume auto: no complete checkpoint in %s; starting a fresh run over what an earlier "
                    "attempt left there (deleting %s)", out, ", ".join(used))
        return None, True
    log.info("resume auto: no checkpoint in %s; starting a fresh run", out)
    return None, False


def _resumed(out: Path, folder: Path, order: dict) -> RunState:
    state = RunState.from_file(folder / checkpoint.RUN_STATE)
    # Checkpoints from before the order recorded overlap: a batch sampled ahead means it was on.
    state.data_order.setdefault("overlap", state.pending is not None)
    if state.data_order.get("overlap") != order["overlap"]:
        # Refused rather than adapted: the saved batch was sampled one policy behind and the learner
        # corrects for that only with overlap on, and a changed schedule reproduces neither run.
        was = state.data_order["overlap"]
        raise ResumeError(f"--resume {folder}: rollout.overlap was {was} in the run that wrote this "
                          f"checkpoint and is {order['overlap']} now; a run keeps its sampling schedule "
                          f"(with overlap, its next batch is already sampled, one policy behind): resume "
                          f"with rollout.overlap={str(was).lower()}")
    if state.data_order != order:
        changed = {k: (state.data_order.get(k), v) for k, v in order.items() if state.data_order.get(k) != v}
        raise ResumeError(f"--resume {folder}: the prompt order would change, so steps would be repeated "
                          f"or skipped: {', '.join(f'{k} {a!r} -> {b!r}' for k, (a, b) in changed.items())}")
    dropped = MetricsSink(out, use_ray=False).truncate(state.metrics_lines)
    if dropped:
        log.warning("resume: dropped %d metrics records written after %s (those steps run again)",
                    dropped, folder.name)
    if checkpoint.root(out).resolve() == folder.parent.resolve():
        checkpoint.discard_after(folder)
    state.restore_rng()
    return state
