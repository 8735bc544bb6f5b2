"""LoRA (model.lora.rank = R) against full fine-tuning on the same task, in one sitting.

Usage (quiet machine: nothing else on its cores; REMAX_RAY_HOME as for training):
    .venv/bin/python bench/lora.py [--rank 8] [--config FILE] [key=value ...]

Each arm is the real ``remax-ray train`` (the embedded default unless --config / overrides say
otherwise), in a process of its own with its own output folder; the two arms differ only in
``model.lora.rank``. While an arm runs, the proportional set size (PSS) of its whole process tree
(driver, Ray, generator with its in-process vLLM engine, reward actor, learner) is sampled; its
peak is the pipeline's. From each arm's metrics.jsonl: the learner's exact training-state bytes,
the sync's seconds and bytes, generation tokens/s, step seconds (medians over steps 2..N: step 1
pays the warm-up), and the held-out greedy reward before and after training.

Prints a markdown table (LoRA / full ratios in the last column) and one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _memory import PeakSampler


def run_arm(overrides: list[str], out: Path) -> dict:
    """One ``remax-ray train`` run; its metrics records and its tree's peak PSS."""
    cli = Path(sys.executable).with_name("remax-ray")
    options = [o for o in overrides if o.startswith("--")]
    keys = [o for o in overrides if not o.startswith("--")]
    cmd = [str(cli), "train", *options, f"run.output_dir={out}", "run.progress=false", *keys]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with PeakSampler(proc.pid, period_s=1.0) as sampler:
        log, _ = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log[-4000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"records": records, "peak": sampler.peak, "wall_s": wall}


def summarise(arm: dict) -> dict[str, float]:
    steps = [r for r in arm["records"] if "loss" in r]
    evals = [r["eval_greedy_reward"] for r in arm["records"] if "eval_greedy_reward" in r]
    later = steps[1:] or steps

    def median(key: str) -> float:
        values = [r[key] for r in later if key in r]
        return statistics.median(values) if values else float("nan")

    peak = arm["peak"]
    return {
        "learner_state_MiB": steps[-1]["learner_state_bytes"] / 2**20,
        "pipeline_peak_PSS_GiB": sum(peak.values()) / 2**30,
        "learner_peak_PSS_GiB": peak.get("learner", 0) / 2**30,
        "generator_peak_PSS_GiB": peak.get("generator actor", 0) / 2**30,
        "sync_s": median("sync_s"),
        "sync_MiB": median("sync_bytes") / 2**20,
        "generate_tokens_per_s": median("generate_tokens_per_s"),
        "learn_s": median("learn_s"),
        "step_s": median("step_s"),
        "eval_greedy_before": evals[0] if evals else float("nan"),
        "eval_greedy_after": evals[-1] if evals else float("nan"),
        "steps": float(len(steps)),
        "wall_s": arm["wall_s"],
    }


def table(full: dict[str, float], lora: dict[str, float], rank: int) -> str:
    lines = [f"| | full fine-tuning | LoRA rank {rank} | LoRA / full |", "|---|---|---|---|"]
    for key in full:
        ratio = lora[key] / full[key] if full[key] else float("nan")
        lines.append(f"| {key} | {full[key]:.4g} | {lora[key]:.4g} | {ratio:.3g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--lora-lr", default="", help="learner.lr for the LoRA arm (default: the config's)")
    parser.add_argument("--config", help="YAML config (default: the embedded default)")
    parser.add_argument("overrides", nargs="*", help="key=value for both arms")
    args = parser.parse_args()
    common = ([f"--config={args.config}"] if args.config else []) + args.overrides
    lora = [f"model.lora.rank={args.rank}", f"model.lora.alpha={args.alpha}"] + \
        ([f"learner.lr={args.lora_lr}"] if args.lora_lr else [])
    root = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    results = {}
    for name, extra in (("full", []), ("lora", lora)):
        print(f"running {name} ({' '.join(common + extra) or 'the embedded default'}) ...", flush=True)
        results[name] = summarise(run_arm(common + extra, root / name))
        print(json.dumps(results[name]), flush=True)
    print(table(results["full"], results["lora"], args.rank))
    print("RESULT " + json.dumps({"rank": args.rank, "alpha": args.alpha, "lora_overrides": lora,
                                  "common": common, "cpus": os.cpu_count(), **results}))


if __name__ == "__main__":
    main()
