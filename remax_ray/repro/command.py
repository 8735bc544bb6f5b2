"""The ``remax-ray repro`` subcommand: its arguments and its entry point (wired in remax_ray.cli)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from remax_ray.config import ConfigError
from remax_ray.repro.plan import (
    DEFAULT_ALGOS,
    DEFAULT_SEEDS,
    REPRO_DEFAULTS,
    parse_algos,
    parse_seeds,
    plan_runs,
    task_base,
)
from remax_ray.repro.storage import check_stored, pending
from remax_ray.repro.tasks import DEFAULT_TASKS, TASKS, parse_tasks

log = logging.getLogger(__name__)

DESCRIPTION = f"""\
Test the ReMax paper's claims (arXiv 2310.10505): train every algorithm with every seed on each task
(same prompts, batch, steps and learning rate), store each run, and report on every stored run.

Runs are stored in --out as <task>/<algo>-seed<k>/ (config.yaml, metrics.jsonl, and summary.json,
written last). A stored run is skipped, so the table can be filled over several sittings by running
the same command again, or with more seeds; a run folder without summary.json (a run that stopped) is
removed and run again; a stored run whose configuration differs from the planned one is refused,
naming the key. Then the variance stage (--no-variance skips it), per task and stored the same way
as <task>/variance-base.json and variance-trained.json: at the base policy and at ReMax's (its first
seed's final checkpoint, kept for this), 32 draws of 32 held-out prompts, the same draws for every
estimator: the gradient variance of each estimator linear in the rewards and without a critic, with
bootstrap intervals, the reward's between/within-prompt split, and the paper's condition
E(r_g - mu)^2 vs E mu^2, also with a per-prompt offset sigma*z(x), sigma in 0, 1, 3. Then, from
everything stored under --out:
  results.md / results.json   provenance (departures from the paper, its figures, commands, commits);
                              per task: held-out greedy and sampled reward with 95% t-intervals over
                              seeds, reward at a matched KL, paired-by-seed verdicts (supported /
                              contradicted / inconclusive), memory and speed beside the paper's figures
                              (from runs with the machine to themselves only);
  <task>/reward.png, <task>/reward_kl.png.
Each task's configuration: the embedded default (or --config), then {' '.join(REPRO_DEFAULTS)},
then the task's overrides, then yours; each run sets algo.estimator, run.seed and run.output_dir.
An estimator that needs n samples per prompt (its min_samples in remax_ray.algo.ESTIMATORS: 2 for a
group baseline) runs with rollout.samples_per_prompt raised to n."""

EPILOG = """\
examples:
  remax-ray repro --out docs/repro                          # 5 arms x seeds 0-4 on sentiment
  remax-ray repro --out docs/repro --seeds 5,6              # later: two more seeds, same table
  remax-ray repro --out docs/repro --report-only            # re-render from the stored runs
  remax-ray repro --tasks sentiment --algos remax,ppo --seeds 0,1 run.steps=10 --out runs/quick"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repro", help="run ReMax, PPO, REINFORCE and controls on tasks; verdicts on the paper's claims",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="base YAML file (default: the embedded default configuration)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help=f"comma-separated tasks among {', '.join(TASKS)} (default: %(default)s)")
    p.add_argument("--algos", default=",".join(DEFAULT_ALGOS),
                   help="comma-separated algorithms, names of algo.estimator (`remax-ray keys` lists "
                        "them) (default: %(default)s)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help="comma-separated seeds; a verdict needs two of each arm (default: %(default)s)")
    p.add_argument("--out", default="runs/repro", help="output folder, reused across sittings (default: %(default)s)")
    p.add_argument("--report-only", action="store_true",
                   help="only re-render results.md, results.json and the figures from the stored runs (no Ray)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each run's final checkpoint (deleted by default: only metrics are compared)")
    p.add_argument("--no-variance", action="store_true",
                   help="skip the variance stage (the paper's condition and each estimator's gradient "
                        "variance at the base and the ReMax-trained policy; about 16 min per policy on 2 cores)")
    p.add_argument("--variance-draws", type=int, default=32,
                   help="draws per prompt of the variance stage (default: %(default)s)")
    p.add_argument("--variance-prompts", type=int, default=32,
                   help="held-out prompts of the variance stage (default: %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="dotted overrides of every task's configuration, e.g. run.steps=10")


def main(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from remax_ray.repro.runner import prepare, train_all, write_report

    command = "remax-ray " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        if args.report_only:
            if args.overrides or args.config:
                raise ConfigError("--report-only renders the stored runs as they are; it takes no "
                                  "--config or overrides")
            return _report(write_report, args.out, command)
        tasks, algos, seeds = parse_tasks(args.tasks), parse_algos(args.algos), parse_seeds(args.seeds)
        bases = {t: task_base(args.config, t, args.overrides) for t in tasks}
        runs = plan_runs(bases, algos, seeds, args.out)
        # Stored runs are checked against the plan before the (possibly slow) asset preparation.
        check_stored(runs, args.out)
    except (ConfigError, FileNotFoundError) as e:
        print(f"remax-ray: configuration error: {e}", file=sys.stderr)
        return 2
    todo = pending(runs)
    if todo:
        from remax_ray.driver.prepare import prepare_builtins_for_config

        for base in bases.values():
            prepare_builtins_for_config(base)
        try:
            model_paths = prepare(todo)
        except (ConfigError, FileNotFoundError, ValueError) as e:
            print(f"remax-ray: {e}", file=sys.stderr)
            return 2
        print(f"remax-ray repro: {len(todo)} of {len(runs)} planned runs to make "
              f"({len(runs) - len(todo)} stored)", file=sys.stderr)
        train_all(todo, model_paths, command=command, keep_checkpoints=args.keep_checkpoints,
                  trained_seeds=trained_seeds(runs))
    else:
        print(f"remax-ray repro: all {len(runs)} planned runs are stored", file=sys.stderr)
    if not args.no_variance:
        from remax_ray.driver.prepare import prepare_builtins_for_config
        from remax_ray.repro import conditions

        seeds_of = trained_seeds(runs)
        for task, base in bases.items():
            prepare_builtins_for_config(base)
            conditions.measure(conditions.conditions(task, base, args.out, seeds_of.get(task)), base,
                               prompts=args.variance_prompts, draws=args.variance_draws)
    return _report(write_report, args.out, command)


def trained_seeds(runs) -> dict[str, int]:
    """Per task, ReMax's smallest planned seed: its final checkpoint is the variance stage's trained policy."""
    from remax_ray.repro.conditions import TRAINED_ALGO

    out: dict[str, int] = {}
    for r in runs:
        if r.algo == TRAINED_ALGO:
            out[r.task] = min(out.get(r.task, r.seed), r.seed)
    return out


def _report(write_report, out: str, command: str) -> int:
    try:
        result = write_report(out, command=command)
    except FileNotFoundError as e:
        print(f"remax-ray: {e}", file=sys.stderr)
        return 2
    print(f"remax-ray repro: wrote {result['out']}/results.md, results.json and <task>/reward*.png")
    return 0
