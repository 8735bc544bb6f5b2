"""The arguments and prompts that the generation benches share (a model, movie-review prompts,
repeats, and the hidden --child flag with which a bench runs each setting in a fresh process)."""

from __future__ import annotations

import argparse


def parse() -> tuple[argparse.Namespace, list[str]]:
    from remax_ray.assets.home import assets_home, resolve_dataset
    from remax_ray.data.prompts import read_jsonl_prompts

    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(assets_home() / "smollm2-135m-instruct"))
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    prompts = read_jsonl_prompts(resolve_dataset("builtin:movie-reviews", "train"))[0][: args.prompts]
    return args, prompts
