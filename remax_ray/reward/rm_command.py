"""The ``remax-ray train-rm`` subcommand: its arguments and its entry point (wired in remax_ray.cli)."""

from __future__ import annotations

import argparse
import json
import sys

from remax_ray.config.base import ConfigError
from remax_ray.config.rm import describe_rm_fields, load_rm_config

EPILOG = """\
Writes an HF folder (safetensors, tokenizer, rm_metrics.json) that reward.kind=hf loads through
reward.model_path, and prints the metrics (held-out and train pairwise accuracy) as JSON.
examples:
  remax-ray train-rm                                       # the builtin:sentiment-rm recipe
  remax-ray train-rm model.path=builtin:sentiment-rm data.pairs=builtin:steered-pairs \\
    data.group_key=instruction data.max_pairs=0 data.max_length=96   # the builtin:steered-rm recipe
  remax-ray train-rm data.pairs=my_pairs.jsonl train.epochs=3 train.output_dir=runs/my-rm
keys: """


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-rm", help="train a reward model on chosen/rejected pairs (Bradley-Terry)",
                       epilog=EPILOG + ", ".join(describe_rm_fields()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file; sections model/data/train")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="dotted overrides applied after the file, e.g. train.epochs=2")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_rm_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"remax-ray: configuration error: {e}", file=sys.stderr)
        return 2
    from remax_ray.reward.train_rm import train_reward_model

    try:
        metrics = train_reward_model(cfg, log=lambda msg: print(msg, file=sys.stderr))
    except (FileNotFoundError, FileExistsError, ValueError) as e:  # pairs, backbone, output folder
        print(f"remax-ray: {e}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0
