"""Hand-made metrics records and stored run folders for the repro tests (no Ray, no training)."""

from __future__ import annotations

import json
from pathlib import Path

from remax_ray.config import dump_yaml
from remax_ray.repro.plan import PlannedRun
from remax_ray.repro.storage import write_summary


def records(final_greedy: float, final_sample: float, kls=(0.0, 0.02, 0.04, 0.06), *, step_s: float = 3.6,
            grad: float = 1.0, state: float = 3 * 2 ** 20, rss: float = 10 * 2 ** 20) -> list[dict]:
    """Four steps, evaluations before (0.1 / 0.0) and after the last step; ``kls`` per step."""
    out = [{"step": 0.0, "eval_greedy_reward": 0.1, "eval_sample_reward": 0.0}]
    for i, kl in enumerate(kls):
        out.append({"step": float(i), "reward_sample": 0.1 * i, "kl": kl, "grad_norm": grad * (i + 1),
                    "generate_s": 1.0, "score_s": 0.1, "learn_s": step_s - 1.6, "sync_s": 0.5, "step_s": step_s,
                    "learner_state_bytes": state, "learner_peak_rss_bytes": rss, "elapsed_s": 4.0 * (i + 1)})
    out.append({"step": float(len(kls)), "eval_greedy_reward": final_greedy, "eval_sample_reward": final_sample})
    return out


def store_run(run: PlannedRun, recs: list[dict], *, other_load: float = 0.0, complete: bool = True,
              **meta) -> Path:
    """A run folder as the runner leaves it: config.yaml, metrics.jsonl, then summary.json if complete."""
    folder = run.folder
    folder.mkdir(parents=True, exist_ok=True)
    dump_yaml(run.cfg, folder / "config.yaml")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    if complete:
        write_summary(folder, {"task": run.task, "algo": run.algo, "seed": run.seed,
                               "overrides": list(run.overrides),
                               "samples_per_prompt": run.cfg.rollout.samples_per_prompt,
                               "eval_prompts": run.cfg.run.eval_prompts, "eval_samples": run.cfg.run.eval_samples,
                               "command": "remax-ray repro --out x", "commit": "abc123", "device": "cpu",
                               "other_load": other_load, **meta})
    return folder
