"""One-step-off overlap against synchronous training, same config and seeds, one after the other.

    REMAX_RAY_HOME=<assets> .venv/bin/python bench/overlap.py [--out DIR] [section.key=value ...]

Each mode runs the embedded default (or the overrides) with fresh actors. Printed per mode: mean
seconds per step (steps 2.. so engine warm-up is excluded) and its phases, the held-out greedy reward
at every evaluation, the mean sampled reward, and for overlap the policy lag, the importance-ratio
statistics and the generator-learner |dlogp|. The speed-up is sync step_s / overlap step_s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path


def run(mode: str, overrides: list[str], out: Path) -> list[dict]:
    from remax_ray.config import load_config
    from remax_ray.driver.prepare import prepare_builtins_for_config
    from remax_ray.driver.trainer import Trainer

    cfg = load_config(None, [*overrides, f"rollout.overlap={mode == 'overlap'}",
                             f"run.output_dir={out / mode}", "run.progress=false"])
    prepare_builtins_for_config(cfg)
    trainer = Trainer(cfg, overwrite=True)
    try:
        trainer.fit()
    finally:
        trainer.shutdown()
    return trainer.metrics.read()


def summarise(records: list[dict]) -> dict:
    steps = [r for r in records if "step_s" in r]
    timed = steps[2:] or steps
    mean = lambda key: statistics.fmean(r[key] for r in timed if key in r) if any(key in r for r in timed) else float("nan")  # noqa: E731
    return {"step_s": mean("step_s"), "generate_s": mean("generate_s"), "learn_s": mean("learn_s"),
            "sync_s": mean("sync_s"), "reward_sample": statistics.fmean(r["reward_sample"] for r in steps),
            "eval": [round(r["eval_greedy_reward"], 4) for r in records if "eval_greedy_reward" in r],
            "policy_lag": mean("policy_lag"), "logp_diff": mean("logp_diff"),
            "is_ratio_mean": mean("is_ratio_mean"), "is_clip_frac": mean("is_clip_frac")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="run folders go here (default: a temporary folder)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="remax-overlap-"))
    results = {mode: summarise(run(mode, args.overrides, out)) for mode in ("sync", "overlap")}
    for mode, s in results.items():
        print(f"{mode:8s} " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()))
    print(f"speed-up (sync step_s / overlap step_s): {results['sync']['step_s'] / results['overlap']['step_s']:.3f}")
    (out / "overlap.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out / 'overlap.json'}")


if __name__ == "__main__":
    main()
