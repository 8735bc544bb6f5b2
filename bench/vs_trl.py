"""remax-ray against TRL's RLOOTrainer on the same work, in one invocation, back to back.

Usage (after `remax-ray assets`; nothing else running on the machine):
    .venv/bin/python bench/vs_trl.py [--steps 6] [--trl-dir bench/.trl]

The work: SmolLM2-135M-Instruct in float32 on CPU, 8 movie-review prompts per step (the built-in
task's training prompts), up to 32 new tokens at temperature 1, the VADER lexicon as the reward, a
KL penalty against a frozen reference in both.

1. TRL goes into a folder of its own (``--trl-dir``, git-ignored), never into the project's
   environment: pip installs there only what the project's environment lacks (``pip install
   --dry-run --report`` lists it), and TRL's process gets the folder on PYTHONPATH.
2. TRL: RLOOTrainer with 2 generations per prompt, in its own process (bench/_trl_rloo.py).
3. remax-ray: the real Trainer (Ray, vLLM, reward and learner actors) twice: 1 sample + 1 greedy
   per prompt (the same 2 generations per prompt as TRL), and 2 samples + 1 greedy (the same 2
   trained completions per prompt as TRL).

Per system: the median seconds per step over steps 2.. (the first is a warm-up), and the peak
memory summed over all of its processes (PSS; bench/_memory.py). Printed: both ratios (remax-ray /
TRL seconds per step) and a ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _memory import PeakSampler
from _memory import report as memory_report

TRL = "trl==1.16.0"
WORK = ["reward.kind=vader", "run.prompts_per_step=8", "rollout.max_new_tokens=32", "rollout.temperature=1.0",
        "rollout.top_p=1.0", "run.progress=false"]


def ensure_trl(folder: str) -> None:
    """TRL and whatever it needs that the project's environment lacks, into ``folder`` only."""
    if os.path.exists(os.path.join(folder, "trl", "__init__.py")):
        return
    report = os.path.join(tempfile.mkdtemp(prefix="trl-report-"), "report.json")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--report", report, TRL],
                   check=True)
    with open(report) as f:
        missing = [f"{p['metadata']['name']}=={p['metadata']['version']}" for p in json.load(f)["install"]]
    print(f"installing into {folder}: {' '.join(missing)}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", folder, *missing],
                   check=True)


def run_trl(folder: str, model_path: str, prompts: list[str], steps: int, threads: int) -> dict:
    spec = {"model_path": model_path, "prompts": prompts, "steps": steps, "prompts_per_step": 8,
            "generations": 2, "max_new_tokens": 32, "lr": 5e-5, "beta": 0.05, "threads": threads,
            "output_dir": tempfile.mkdtemp(prefix="trl-out-")}
    path = os.path.join(spec["output_dir"], "spec.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_trl_rloo.py")
    proc = subprocess.Popen([sys.executable, script, path], env=env, stdout=subprocess.PIPE, text=True)
    with PeakSampler(proc.pid) as memory:
        out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"TRL's run failed (exit {proc.returncode})")
    result = json.loads(next(x for x in out.splitlines() if x.startswith("TRL_RESULT ")).removeprefix("TRL_RESULT "))
    return {"step_s": statistics.median(result["step_s"][1:]), "steps": result["step_s"],
            "peak_pss_bytes": memory.peak}


def run_remax(samples: int, steps: int) -> dict:
    import ray

    from remax_ray.config import load_config
    from remax_ray.driver.prepare import prepare_builtins_for_config
    from remax_ray.driver.trainer import Trainer
    from remax_ray.monitor import console

    cfg = load_config(None, [*WORK, f"rollout.samples_per_prompt={samples}", f"run.steps={steps}",
                             f"run.output_dir={tempfile.mkdtemp(prefix='remax-vs-trl-')}"])
    console.quiet_actors(False)
    prepare_builtins_for_config(cfg)
    with PeakSampler(os.getpid()) as memory:
        trainer = Trainer(cfg, overwrite=True)
        try:
            records = [trainer.step() for _ in range(steps)]
        finally:
            trainer.shutdown()
            ray.shutdown()
    phases = {k: statistics.median(r[f"{k}_s"] for r in records[1:]) for k in ("generate", "score", "learn", "sync")}
    times = [r["step_s"] for r in records]
    return {"step_s": statistics.median(times[1:]), "steps": times, "phases": phases, "peak_pss_bytes": memory.peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=6, help="steps per system; the first is a warm-up")
    p.add_argument("--trl-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".trl"))
    args = p.parse_args()
    if args.steps < 2:
        p.error("--steps must be at least 2 (the first is a warm-up)")
    from remax_ray.config import load_config
    from remax_ray.driver.preflight import preflight
    from remax_ray.driver.prepare import prepare_builtins_for_config

    cfg = load_config(None, WORK)
    prepare_builtins_for_config(cfg)
    model_path, splits = preflight(cfg)
    ensure_trl(args.trl_dir)
    threads = os.cpu_count() or 1
    trl = run_trl(args.trl_dir, model_path, list(splits.train[: 8 * args.steps]), args.steps, threads)
    equal_generations = run_remax(1, args.steps)
    equal_trained = run_remax(2, args.steps)
    print(f"\nseconds per step (median of steps 2..{args.steps}); same machine, back to back")
    print(f"  TRL {TRL} RLOOTrainer, 2 generations per prompt:  {trl['step_s']:.2f} s")
    for name, run in (("1 sample + 1 greedy (equal generations)", equal_generations),
                      ("2 samples + 1 greedy (equal trained)", equal_trained)):
        phases = ", ".join(f"{k} {v:.2f}" for k, v in run["phases"].items())
        print(f"  remax-ray, {name}: {run['step_s']:.2f} s   ratio {run['step_s'] / trl['step_s']:.2f}   ({phases})")
    memory_report(trl["peak_pss_bytes"], "TRL (one process)")
    memory_report(equal_generations["peak_pss_bytes"], "remax-ray, 1 sample + 1 greedy (all processes)")
    print("RESULT " + json.dumps({
        "trl": trl, "remax_equal_generations": equal_generations, "remax_equal_trained": equal_trained,
        "ratio_equal_generations": equal_generations["step_s"] / trl["step_s"],
        "ratio_equal_trained": equal_trained["step_s"] / trl["step_s"]}))


if __name__ == "__main__":  # vLLM's engine subprocesses re-import this module
    main()
