"""``run_repro``: every (seed, algorithm) run on one set of generators, then the report.

The vLLM engines and the reward actor start once and serve every run (an engine takes ~45 s to
start); each run gets a fresh learner process, whose weights the Trainer first syncs into the
generators, so each run starts from the base policy and its peak RSS belongs to one algorithm.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from remax_ray.config import Config, to_yaml
from remax_ray.repro.claims import evaluate_claims
from remax_ray.repro.plan import PlannedRun, plan_runs, refuse_existing
from remax_ray.repro.report import ReportContext, render_markdown, results_json
from remax_ray.repro.summary import aggregate, summarize_run

log = logging.getLogger(__name__)


def prepare(base: Config, algos: list[str], seeds: list[int],
            out_dir: str | Path) -> tuple[list[PlannedRun], str]:
    """Every check that can fail on user input, before any actor starts; returns (runs, model path)."""
    from remax_ray.driver.preflight import preflight

    runs = plan_runs(base, algos, seeds, out_dir)
    refuse_existing(runs)
    model_paths = {preflight(r.cfg)[0] for r in runs}
    assert len(model_paths) == 1, model_paths  # check_shared_actors compared model.path already
    return runs, model_paths.pop()


def run_repro(base: Config, algos: list[str], seeds: list[int], out_dir: str | Path, *,
              command: str = "", keep_checkpoints: bool = False, progress: bool | None = None,
              include_dashboard: bool | None = None) -> dict[str, Any]:
    """Train every run, write results.md/results.json/reward.png into ``out_dir``; return the rows."""
    runs, model_path = prepare(base, algos, seeds, out_dir)
    device = train_all(runs, model_path, keep_checkpoints=keep_checkpoints, progress=progress,
                       include_dashboard=include_dashboard)
    return write_results(runs, base, out_dir, command=command, device=device)


def train_all(runs: list[PlannedRun], model_path: str, *, keep_checkpoints: bool = False,
              progress: bool | None = None, include_dashboard: bool | None = None) -> str:
    """Fit every planned run on shared generators and reward actor; returns the learner's device."""

    from remax_ray.cluster.actors import Actors, connect, start_actors, start_learner
    from remax_ray.driver.trainer import Trainer

    connect(runs[0].cfg, include_dashboard)
    shared = start_actors(runs[0].cfg, model_path)
    # Every run, the first included, gets its own learner process started the same way.
    shared.learner.kill()
    try:
        warm_up(shared, runs)
        for i, run in enumerate(runs, 1):
            log.info("repro: run %d/%d: %s", i, len(runs), run.name)
            learner = start_learner(run.cfg, model_path, shared.device, where=shared.placement)
            actors = Actors(shared.generators, shared.reward, learner, shared.device, shared.dtype)
            try:
                summary = Trainer(run.cfg, actors=actors).fit(progress)
            finally:
                learner.kill()
            log.info("repro: %s: held-out greedy reward %.4f -> %.4f in %.0f s", run.name,
                     summary["eval_before"], summary["eval_after"], summary["wall_s"])
            if not keep_checkpoints:
                # The comparison needs only the metrics; a checkpoint per run would fill the disk.
                shutil.rmtree(Path(run.cfg.run.output_dir) / "checkpoints", ignore_errors=True)
    finally:
        shared.kill()
    return shared.device


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


def read_records(run: PlannedRun) -> list[dict[str, Any]]:
    path = Path(run.cfg.run.output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_results(runs: list[PlannedRun], base: Config, out_dir: str | Path, *, command: str,
                  device: str = "cpu") -> dict[str, Any]:
    """Summarise the runs' metrics.jsonl files into results.md, results.json and reward.png."""
    from remax_ray.monitor.plots import plot_rewards

    out = Path(out_dir)
    records = {r.name: read_records(r) for r in runs}
    summaries = [summarize_run(r.algo, r.seed, records[r.name], r.cfg.rollout.samples_per_prompt)
                 for r in runs]
    rows = aggregate(summaries)
    claims = evaluate_claims(rows)
    overrides = {r.algo: list(r.overrides) for r in runs}
    notes = [f"{algo} uses {runs_of.cfg.rollout.samples_per_prompt} samples per prompt (its group "
             "baseline needs two); the other algorithms use "
             f"{base.rollout.samples_per_prompt}."
             for algo, runs_of in {r.algo: r for r in runs}.items()
             if runs_of.cfg.rollout.samples_per_prompt != base.rollout.samples_per_prompt]
    ctx = ReportContext(command=command, config_yaml=to_yaml(base), overrides=overrides,
                        steps=base.run.steps, prompts_per_step=base.run.prompts_per_step,
                        seeds=list(dict.fromkeys(r.seed for r in runs)), device=device, notes=notes)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(render_markdown(rows, claims, ctx))
    (out / "results.json").write_text(results_json(summaries, rows, claims, ctx, base.to_dict()))
    by_algo: dict[str, list] = {}
    for r in runs:
        by_algo.setdefault(r.algo, []).append(records[r.name])
    plot_rewards(by_algo, out / "reward.png")
    return {"rows": rows, "claims": claims, "out": str(out)}
