"""``remax-ray train | train-rm | assets | keys | repro``: the console script and the ``ray job submit`` entrypoint."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from remax_ray.config import ConfigError, describe_fields, load_config
from remax_ray.repro import command as repro_command
from remax_ray.reward import rm_command


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remax-ray", description="ReMax RLHF on Ray + vLLM")
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="train a policy (joins RAY_ADDRESS's cluster if set, else starts a local Ray)",
        epilog="keys: " + ", ".join(describe_fields()))
    train.add_argument("--config", help="YAML file; sections model/rollout/reward/learner/algo/run/cluster")
    train.add_argument("overrides", nargs="*", metavar="section.key=value",
                       help="dotted overrides applied after the file, e.g. algo.kl_coef=0.02")
    sub.add_parser("assets", help="prepare the offline default assets (SmolLM2 policy, movie-review "
                                  "prompts, movie-snippet pairs and the sentiment reward model)")
    sub.add_parser("keys", help="list every configuration key with its meaning")
    repro_command.add_parser(sub)
    rm_command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "assets":
        from remax_ray.assets import prepare_all

        for name, path in prepare_all().items():
            print(f"{name}: {path}")
        return 0
    if args.command == "repro":
        return repro_command.main(args, argv)
    if args.command == "train-rm":
        return rm_command.main(args)
    if args.command == "keys":
        for key, text in describe_fields().items():
            print(f"{key}\n    {text}")
        return 0
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as e:
        print(f"remax-ray: configuration error: {e}", file=sys.stderr)
        return 2
    from remax_ray.assets import prepare_builtins_for_config
    from remax_ray.trainer import Trainer

    prepare_builtins_for_config(cfg)
    try:
        trainer = Trainer(cfg)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"remax-ray: {e}", file=sys.stderr)
        return 2
    summary = trainer.fit()
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
