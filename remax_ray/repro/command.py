"""The ``remax-ray repro`` subcommand: its arguments and its entry point (wired in remax_ray.cli)."""

from __future__ import annotations

import argparse
import shlex
import sys

from remax_ray.config import ConfigError, load_config
from remax_ray.repro.plan import DEFAULT_ALGOS, parse_algos, parse_seeds, plan_runs, refuse_existing

DESCRIPTION = """\
Reproduce the ReMax paper's claims (arXiv 2310.10505): train every algorithm with every seed on the
same task, prompts, batch size and steps, then write into --out:
  results.md    the table (final held-out greedy reward, KL, seconds per phase, learner memory,
                grad-norm variance) and whether each claim holds, with the command and config;
  results.json  the same numbers;  reward.png  reward against step and against wall-clock time;
  <algo>-seed<k>/  each run's metrics.jsonl and config.yaml.
The base configuration is the embedded default (or --config) plus the overrides; each run sets
algo.estimator, run.seed and run.output_dir itself. rloo and grpo run with
rollout.samples_per_prompt=2 (their group baseline needs two samples; the table says so)."""

EPILOG = """\
examples:
  remax-ray repro                                   # remax,ppo,reinforce x seeds 0,1, default task
  remax-ray repro run.steps=10                      # a shorter run
  remax-ray repro --algos remax,ppo,reinforce,rloo,grpo --seeds 0,1,2 --out runs/repro-all"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repro", help="run ReMax, PPO and REINFORCE on one task and compare them",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="base YAML file (default: the embedded default configuration)")
    p.add_argument("--algos", default=",".join(DEFAULT_ALGOS),
                   help="comma-separated algorithms among remax, ppo, reinforce, rloo, grpo "
                        "(default: %(default)s)")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds, at least two (default: %(default)s)")
    p.add_argument("--out", default="runs/repro", help="output folder (default: %(default)s)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each run's final checkpoint (deleted by default: only metrics are compared)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="dotted overrides of the base configuration, e.g. run.steps=10")


def main(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from remax_ray.repro.runner import prepare, train_all, write_results

    try:
        algos, seeds = parse_algos(args.algos), parse_seeds(args.seeds)
        base = load_config(args.config, args.overrides)
        # Derived per-run configs are checked before the (possibly slow) asset preparation.
        refuse_existing(plan_runs(base, algos, seeds, args.out))
    except (ConfigError, FileNotFoundError) as e:
        print(f"remax-ray: configuration error: {e}", file=sys.stderr)
        return 2
    from remax_ray.driver.prepare import prepare_builtins_for_config

    prepare_builtins_for_config(base)
    try:
        runs, model_path = prepare(base, algos, seeds, args.out)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"remax-ray: {e}", file=sys.stderr)
        return 2
    device = train_all(runs, model_path, keep_checkpoints=args.keep_checkpoints)
    command = "remax-ray " + shlex.join(sys.argv[1:] if argv is None else argv)
    result = write_results(runs, base, args.out, command=command, device=device)
    print(f"remax-ray repro: wrote {result['out']}/results.md, results.json and reward.png")
    return 0
