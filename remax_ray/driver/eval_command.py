"""``remax-ray eval MODEL_OR_CHECKPOINT [more ...]``: the held-out greedy and sampled reward of one or
more models, compared in one table.

It is the trainer's evaluation (:func:`remax_ray.driver.evaluation.evaluate`) through the same
actors (:func:`remax_ray.cluster.actors.start_generators` and ``start_reward``), with the same
dataset and reward options as training: a checkpoint's own ``config.yaml`` unless ``--config`` is
given, then the dotted overrides. Every model is checked (preflight) before any actor starts. The
reward actor serves every model; each model gets fresh generators (vLLM engines load their weights
at start), killed before the next one starts.

Writes ``eval.json`` (the table) and ``eval_samples.jsonl`` (every held-out prompt's greedy and
sampled responses with their rewards, per model) into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remax_ray.config import Config, ConfigError, load_config
from remax_ray.learner import checkpoint

if TYPE_CHECKING:
    from remax_ray.learner.lora import AdapterUpdate

_OVERRIDE = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*=")

EPILOG = """\
examples:
  remax-ray eval runs/default                               # every checkpoint of the run
  remax-ray eval builtin:smollm2-135m-instruct runs/default/checkpoints/step-000024 --samples 8
  remax-ray eval runs/arith run.eval_prompts=200            # a larger held-out set"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="held-out greedy and sampled reward of models or checkpoints, in one table",
        description="Generates greedy and --samples sampled responses to the held-out prompts with each "
                    "model, scores them with the run's reward and prints mean rewards. A run folder "
                    "stands for every checkpoint it kept. Options default to the first checkpoint's "
                    "config.yaml (the run's dataset and reward), else the embedded default.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="+", metavar="MODEL_OR_CHECKPOINT | section.key=value",
                   help="model folders, builtin:<model>, checkpoint folders or run folders, then dotted "
                        "overrides (e.g. run.eval_prompts=64)")
    p.add_argument("--config", help="YAML file (default: the first checkpoint's config.yaml)")
    p.add_argument("--samples", type=int, default=4, help="sampled responses per prompt (default 4)")
    p.add_argument("--out", help="output folder (default: RUN/eval for a run's checkpoints, else runs/eval)")


def split_items(items: list[str]) -> tuple[list[str], list[str]]:
    """(models, overrides): ``section.key=value`` items are overrides, the rest name models."""
    overrides = [i for i in items if _OVERRIDE.match(i)]
    return [i for i in items if not _OVERRIDE.match(i)], overrides


def _run_of(path: Path) -> Path | None:
    """The run folder a path is, or is a checkpoint of."""
    if (checkpoint.root(path)).is_dir():
        return path
    if path.parent.name == checkpoint.root(".").name and (path / checkpoint.RUN_STATE).exists():
        return path.parent.parent
    return None


def expand(models: list[str]) -> list[str]:
    """A run folder stands for each of its step checkpoints, oldest first; the rest pass through."""
    out: list[str] = []
    for model in models:
        path = Path(model)
        if path.is_dir() and checkpoint.root(path).is_dir():
            folders = checkpoint.step_folders(checkpoint.root(path))
            if not folders:
                raise ConfigError(f"{model}: a run folder without checkpoints (nothing in {checkpoint.root(path)})")
            out += [str(f) for f in folders]
        else:
            out.append(model)
    return out


def config_file(models: list[str], given: str | None) -> str | None:
    """``--config``, else the first checkpoint's config.yaml (what that run trained with), else None."""
    if given:
        return given
    return next((str(Path(m) / checkpoint.CONFIG) for m in models if (Path(m) / checkpoint.CONFIG).is_file()), None)


def default_out(models: list[str]) -> Path:
    run = next((r for m in models if (r := _run_of(Path(m))) is not None), None)
    return run / "eval" if run is not None else Path("runs/eval")


def with_model(cfg: Config, model: str) -> Config:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path=model))


def served_as(cfg: Config, model: str) -> tuple[Config, AdapterUpdate | None]:
    """How ``model`` is served: as itself, or, for a LoRA checkpoint (an adapter folder), as the base
    model it was trained on (recorded in its adapter config) with the adapter loaded from memory."""
    from remax_ray.learner.lora import base_of, is_adapter_folder, read_adapter  # torch: not at CLI import

    if not is_adapter_folder(model):
        return with_model(cfg, model), None
    update = read_adapter(model)
    base = base_of(update)
    if not base:
        raise ConfigError(f"{model}: a LoRA adapter whose adapter_config.json names no base model "
                          "(base_model_name_or_path)")
    lora = dataclasses.replace(cfg.model, path=base, reference_path="", lora_rank=int(update.config["r"]))
    return dataclasses.replace(cfg, model=lora), update


def format_table(rows: list[dict[str, Any]], n: int) -> str:
    """The printed table: one line per model."""
    width = max([len("model"), *(len(r["model"]) for r in rows)])
    sampled = f"sampled (n={n})"
    lines = [f"{'model':<{width}}  {'greedy':>8}  {sampled:>14}  {'prompts':>7}"]
    for r in rows:
        s = "-" if r["sample_reward"] is None else f"{r['sample_reward']:.4f}"
        lines.append(f"{r['model']:<{width}}  {r['greedy_reward']:>8.4f}  {s:>14}  {r['valid']:>7}")
    return "\n".join(lines)


def run_eval(cfg: Config, models: list[str], n: int, out: Path) -> list[dict[str, Any]]:
    """Evaluate every model on ``cfg``'s held-out prompts; write eval.json and eval_samples.jsonl."""
    import ray

    from remax_ray.cluster.actors import connect, resolve_device, start_generators, start_reward
    from remax_ray.driver import actor_calls
    from remax_ray.driver.evaluation import evaluate
    from remax_ray.driver.preflight import preflight

    served = [served_as(cfg, model) for model in models]
    checked = [(model, *preflight(how), how, adapter)  # before any actor
               for model, (how, adapter) in zip(models, served)]
    connect(cfg)
    device = resolve_device(cfg)
    reward = start_reward(cfg)
    out.mkdir(parents=True, exist_ok=True)
    samples_file = out / "eval_samples.jsonl"
    samples_file.write_text("")
    rows = []
    try:
        ray.get(reward.__ray_ready__.remote())
        for model, model_path, splits, how, adapter in checked:
            generators = start_generators(how, model_path, device)
            try:
                ray.get([g.__ray_ready__.remote() for g in generators])
                if adapter is not None:
                    ray.get([g.load_adapter.remote(adapter, 1) for g in generators])
                result = evaluate(
                    lambda prompts, **kw: actor_calls.generate(generators, prompts, seed=cfg.run.seed, **kw),
                    lambda rollouts, columns: actor_calls.score(reward, rollouts, columns),
                    splits.eval, splits.columns("eval", list(range(len(splits.eval)))), n=n)
            finally:
                for g in generators:
                    ray.kill(g, no_restart=True)
            rows.append({"model": model, "greedy_reward": result.greedy_reward,
                         "sample_reward": result.sample_reward, "prompts": len(splits.eval), "valid": result.valid})
            with open(samples_file, "a", encoding="utf-8") as f:
                for record in result.table():
                    f.write(json.dumps({"model": model, **record}, ensure_ascii=False, default=str) + "\n")
    finally:
        ray.kill(reward, no_restart=True)
    summary = {"dataset": cfg.run.dataset, "reward": dataclasses.asdict(cfg.reward), "samples_per_prompt": n,
               "seed": cfg.run.seed, "results": rows}
    (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    return rows


def main(args: argparse.Namespace) -> int:
    from remax_ray.monitor import console

    try:
        models, overrides = split_items(args.items)
        if not models:
            raise ConfigError("name at least one model, checkpoint or run folder to evaluate")
        if args.samples < 0:
            raise ConfigError(f"--samples must be >= 0 (got {args.samples})")
        models = expand(models)
        source = config_file(models, args.config)
        cfg = load_config(source, overrides)
    except (ValueError, FileNotFoundError) as e:
        print(f"remax-ray eval: configuration error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_out(models)
    print(f"remax-ray eval: {len(models)} model(s); dataset {cfg.run.dataset}, reward {cfg.reward.kind} "
          f"(config: {source or 'embedded default'})", file=sys.stderr)
    console.quiet_actors(args.verbose)  # before ray is imported
    from remax_ray.driver.prepare import prepare_builtins_for, prepare_builtins_for_config

    try:
        prepare_builtins_for_config(cfg)
        prepare_builtins_for(*models)
        rows = run_eval(cfg, models, args.samples, out)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"remax-ray eval: {e}", file=sys.stderr)
        return 2
    print(format_table(rows, args.samples))
    print(f"wrote {out / 'eval.json'} and {out / 'eval_samples.jsonl'}")
    return 0
