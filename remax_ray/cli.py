"""``remax-ray train | eval | samples | train-rm | assets | keys | repro | plot``: the console script and the
``ray job submit`` entrypoint."""

from __future__ import annotations

import argparse
import json
import sys

from remax_ray.config import TASKS, ConfigError, describe_fields, load_config, task_overrides
from remax_ray.driver import eval_command
from remax_ray.driver.interrupts import prompt_exit
from remax_ray.driver.resume import auto_start
from remax_ray.monitor import console, run_plots, samples
from remax_ray.repro import command as repro_command
from remax_ray.reward import rm_command

AUTO = "auto"  # --resume auto: the newest checkpoint if there is one, else a fresh run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remax-ray", description="ReMax RLHF on Ray + vLLM")
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="train a policy (joins RAY_ADDRESS's cluster if set, else starts a local Ray)",
        epilog="tasks: " + " ".join(f"[{name}] {task.description}" for name, task in TASKS.items())
               + "\n\nkeys: " + ", ".join(describe_fields()))
    train.add_argument("--config", help="YAML file; sections model/rollout/reward/learner/algo/run/cluster")
    train.add_argument("--task", metavar="NAME",
                       help=f"a built-in task ({', '.join(TASKS)}; see below): its dataset and reward, "
                            "set over --config and under the dotted overrides")
    train.add_argument("--resume", metavar="auto|latest|PATH",
                       help="continue a run: 'latest' (the newest checkpoint in run.output_dir), a run "
                            "folder or a checkpoint folder; without --config, the checkpoint's config. "
                            "'auto': as 'latest' where run.output_dir has a complete checkpoint, else a "
                            "fresh run (over what a run without one left): the command a restarted "
                            "entrypoint runs")
    train.add_argument("--overwrite", action="store_true",
                       help="start over in a run.output_dir that already holds a run (deletes its "
                            "metrics and checkpoints)")
    train.add_argument("overrides", nargs="*", metavar="section.key=value",
                       help="dotted overrides applied after the file, e.g. algo.kl_coef=0.02")
    eval_command.add_parser(sub)
    samples.add_parser(sub)
    sub.add_parser("assets", help="prepare the offline builtin assets (SmolLM2 policy, movie-review "
                                  "prompts plain and with instructions, movie-snippet pairs for both, "
                                  "the sentiment and steered reward models, and the arithmetic "
                                  "problems)")
    sub.add_parser("keys", help="list every configuration key with its meaning")
    repro_command.add_parser(sub)
    rm_command.add_parser(sub)
    run_plots.add_parser(sub)
    for command in sub.choices.values():
        command.add_argument("-v", "--verbose", action="store_true",
                             help="show every library's log lines (Ray, vLLM, transformers); by default "
                                  "the terminal shows the progress bar, remax-ray's messages and warnings")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console.configure(args.verbose)
    if args.command == "assets":
        from remax_ray.driver.prepare import prepare_all

        for name, path in prepare_all().items():
            print(f"{name}: {path}")
        return 0
    if args.command == "repro":
        console.quiet_actors(args.verbose)
        return repro_command.main(args, argv)
    if args.command == "plot":
        return run_plots.main(args)
    if args.command == "samples":
        return samples.main(args)
    if args.command == "eval":
        return eval_command.main(args)
    if args.command == "train-rm":
        return rm_command.main(args)
    if args.command == "keys":
        for key, text in describe_fields().items():
            print(f"{key}\n    {text}")
        return 0
    if args.resume == AUTO and args.overwrite:
        # auto exists to be run again after a failure; with --overwrite each retry would delete the
        # progress the earlier attempt saved.
        print("remax-ray: configuration error: --resume auto and --overwrite contradict each other: auto "
              "continues the run in run.output_dir (or starts one where it has no checkpoint); to start "
              "over, run once with --overwrite and no --resume", file=sys.stderr)
        return 2
    try:
        overrides = [*task_overrides(args.task), *args.overrides] if args.task else args.overrides
        cfg = load_config(_config_file(args), overrides)
    except (ValueError, FileNotFoundError) as e:  # ConfigError, or a --resume naming no checkpoint
        print(f"remax-ray: configuration error: {e}", file=sys.stderr)
        return 2
    resume, overwrite = args.resume, args.overwrite
    if resume == AUTO:
        resume, overwrite = auto_start(cfg.run.output_dir)
    console.quiet_actors(args.verbose)  # before the trainer imports ray
    from remax_ray.driver.prepare import prepare_builtins_for_config
    from remax_ray.driver.trainer import RunFailed, Trainer

    try:
        with prompt_exit():  # Ctrl-C and SIGTERM end start-up within seconds, also inside ray.init
            prepare_builtins_for_config(cfg)
            try:
                trainer = Trainer(cfg, resume=resume, overwrite=overwrite)
            except (ConfigError, FileNotFoundError, ValueError) as e:
                print(f"remax-ray: {e}", file=sys.stderr)
                return 2
    except KeyboardInterrupt:
        print("remax-ray: interrupted during start-up", file=sys.stderr)
        return 130
    try:
        summary = trainer.fit()
    except RunFailed as e:
        print(f"remax-ray: {e}", file=sys.stderr)
        return 1
    finally:  # vLLM engines hold their memory until their actor dies, also after a failure
        trainer.shutdown()
    print(json.dumps(summary, indent=2))
    return 0


def _config_file(args: argparse.Namespace) -> str | None:
    """--resume PATH without --config continues with the config saved in that checkpoint. latest and
    auto take the command's config: it names the run.output_dir they look in."""
    if args.config or not args.resume or args.resume in ("latest", AUTO):
        return args.config
    from remax_ray.learner import checkpoint

    folder = checkpoint.resolve(args.resume, args.resume)
    return str(folder / checkpoint.CONFIG)


if __name__ == "__main__":
    sys.exit(main())
