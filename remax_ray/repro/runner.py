"""Make the planned runs that are not stored yet, task by task, then report on every stored run.

Per task, the vLLM engines and the reward actor start once and serve all of that task's runs (an
engine takes ~45 s to start; the tasks differ in reward, so each has its own). Each run gets a fresh
learner process, whose weights the Trainer first syncs into the generators, so each run starts from
the base policy and its peak RSS belongs to one algorithm. A run is stored when its summary.json is
written, last; the report is then rendered from every complete run under the output folder.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from remax_ray.repro import conditions, machine
from remax_ray.repro.arms import task_result
from remax_ray.repro.plan import PlannedRun
from remax_ray.repro.report import ReportContext, render_markdown, results_json
from remax_ray.repro.storage import stored_runs, write_summary
from remax_ray.repro.summary import summarize_stored

log = logging.getLogger(__name__)


def by_task(runs: list[PlannedRun]) -> dict[str, list[PlannedRun]]:
    out: dict[str, list[PlannedRun]] = {}
    for r in runs:
        out.setdefault(r.task, []).append(r)
    return out


def prepare(runs: list[PlannedRun]) -> dict[str, str]:
    """Every check that can fail on user input, before any actor starts: each task's policy folder,
    prompts and reward (one run per task: its runs share those settings). Returns task -> model path."""
    from remax_ray.driver.preflight import preflight

    paths = {}
    for task, task_runs in by_task(runs).items():
        cfg = task_runs[0].cfg
        paths[task], splits = preflight(cfg)
        if len(splits.eval) < cfg.run.eval_prompts:
            log.warning("repro: %s: the held-out split has %d prompts, fewer than run.eval_prompts=%d; "
                        "the report will flag it", task, len(splits.eval), cfg.run.eval_prompts)
    return paths


def train_all(runs: list[PlannedRun], model_paths: dict[str, str], *, command: str,
              keep_checkpoints: bool = False, progress: bool | None = None,
              include_dashboard: bool | None = None, trained_seeds: dict[str, int] | None = None) -> None:
    """Make every run, each task on its own shared generators and reward actor, storing each run.
    ``trained_seeds``: task -> the ReMax seed whose final checkpoint is kept for the variance stage."""
    from remax_ray.cluster.actors import connect, start_actors

    commit = machine.code_version()
    for task, task_runs in by_task(runs).items():
        keep = (trained_seeds or {}).get(task)
        connect(task_runs[0].cfg, include_dashboard)
        shared = start_actors(task_runs[0].cfg, model_paths[task])
        # Every run, the first included, gets its own learner process started the same way.
        shared.learner.kill()
        try:
            warm_up(shared, task_runs)
            for i, run in enumerate(task_runs, 1):
                log.info("repro: %s: run %d/%d: %s", task, i, len(task_runs), run.name)
                train_one(run, shared, model_paths[task], command=command, commit=commit,
                          keep_checkpoints=keep_checkpoints or (run.algo, run.seed) == (conditions.TRAINED_ALGO, keep),
                          progress=progress)
        finally:
            shared.kill()


def train_one(run: PlannedRun, shared: Any, model_path: str, *, command: str, commit: str,
              keep_checkpoints: bool, progress: bool | None) -> None:
    from remax_ray.cluster.actors import Actors, start_learner
    from remax_ray.driver.trainer import Trainer

    before = machine.sample()
    learner = start_learner(run.cfg, model_path, shared.device, where=shared.placement)
    actors = Actors(shared.generators, shared.reward, learner, shared.device, shared.dtype)
    try:
        trainer = Trainer(run.cfg, actors=actors)
        result = trainer.fit(progress)
    finally:
        learner.kill()
    after = machine.sample()
    load = machine.other_load(before, after, machine.cores())
    log.info("repro: %s: held-out greedy reward %.4f -> %.4f in %.0f s; other load %.1f%% (%s)",
             run.label, result["eval_before"], result["eval_after"], result["wall_s"], 100 * load,
             "quiet" if machine.is_quiet(load) else "loaded: its seconds and memory stay out of the table")
    if not keep_checkpoints:
        # The comparison needs only the metrics; a checkpoint per run would fill the disk. ReMax's
        # first planned seed keeps its own: it is the trained policy of the variance condition.
        shutil.rmtree(run.folder / "checkpoints", ignore_errors=True)
    write_summary(run.folder, {
        "task": run.task, "algo": run.algo, "seed": run.seed, "overrides": list(run.overrides),
        "samples_per_prompt": run.cfg.rollout.samples_per_prompt,
        "eval_prompts": len(trainer.splits.eval), "eval_samples": run.cfg.run.eval_samples,
        "command": command, "commit": commit, "device": shared.device, "cores": machine.cores(),
        "other_load": load, "wall_s": result["wall_s"],
        "eval_before": result["eval_before"], "eval_after": result["eval_after"],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def warm_up(actors: Any, runs: list[PlannedRun]) -> None:
    """A fresh engine's first sampled generate() is slow (18 s against 0.1 s for the tiny test model
    on CPU): pay it here, or it lands in whichever run goes first and skews its wall-clock curve."""
    import ray

    cfg = runs[0].cfg
    n = max(r.cfg.rollout.samples_per_prompt for r in runs)
    prompts = ["Warm-up prompt."] * cfg.run.prompts_per_step
    # step=-2: no run uses it (training steps are >= 0, evaluation is -1).
    shards = ray.get([g.generate.remote(prompts, n=n, step=-2, first_index=0, run_seed=cfg.run.seed,
                                        greedy=True) for g in actors.generators])
    texts = [c.text for r in shards[0] for c in r.samples]
    ray.get(actors.reward.score.remote(prompts[:1] * len(texts), texts))


def write_report(out_dir: str | Path, *, command: str) -> dict[str, Any]:
    """results.md and results.json in ``out_dir``, reward.png and reward_kl.png in each task's folder,
    from every complete run stored there. Needs no Ray."""
    from remax_ray.monitor.plots import plot_reward_kl, plot_rewards

    out = Path(out_dir)
    stored = stored_runs(out)
    task_dirs = {p.parent.name for p in out.glob(f"*/{conditions.PREFIX}*.json")} | set(stored)
    variance = {task: records for task in sorted(task_dirs) if (records := conditions.stored(out / task))}
    if not stored and not variance:
        raise FileNotFoundError(f"no complete run (a folder <task>/<algo>-seed<k> with summary.json) and "
                                f"no variance record (<task>/{conditions.PREFIX}*.json) under {out}")
    results, configs, overrides = [], {}, {}
    for task, runs in stored.items():
        result = task_result(task, [summarize_stored(r) for r in runs])
        results.append(result)
        configs[task] = next((r.config for r in runs if r.algo == "remax"), runs[0].config)
        overrides[task] = {a.algo: list(next(r for r in runs if r.algo == a.algo).meta.get("overrides", []))
                           for a in result.arms}
        curves: dict[str, list] = {a.algo: [] for a in result.arms}
        paths: dict[str, list] = {a.algo: [] for a in result.arms}
        for r, s in zip(runs, result.runs):
            curves[r.algo].append(r.records)
            paths[r.algo].append([(p.kl, p.greedy, p.sample) for p in s.points])
        plot_rewards(curves, out / task / "reward.png", title=f"{task}: reward per step")
        plot_reward_kl(paths, out / task / "reward_kl.png", result.target_kl, title=task)
    ctx = ReportContext(command=command, commit=machine.code_version(), configs=configs, overrides=overrides,
                        variance=variance)
    (out / "results.md").write_text(render_markdown(results, ctx))
    (out / "results.json").write_text(results_json(results, ctx))
    return {"results": results, "out": str(out)}
