"""One condition of the estimator-variance measurement (remax_ray.repro.variance.measure_variance):
a task's config and a policy, at fixed parameters; writes the JSON record (skipped when it exists)
and prints the tables.

Usage (after `remax-ray assets`):
  .venv/bin/python bench/variance_condition.py --out runs/variance/base.json          # default task, base policy
  .venv/bin/python bench/variance_condition.py --policy runs/x/checkpoints/step-000024 --label step24 \
      --out runs/variance/step24.json --prompts 8 --draws 4                          # a smaller, cheaper one
"""

from __future__ import annotations

import argparse
import logging


def main() -> None:
    from remax_ray.config import REWARD_KINDS, load_config
    from remax_ray.repro.variance import measure_variance, render_variance_markdown

    p = argparse.ArgumentParser()
    p.add_argument("--config", help="YAML config of the task (default: the embedded default)")
    p.add_argument("--policy", help="policy folder, builtin: name or checkpoint (default: model.path)")
    p.add_argument("--label", default="base", help="policy label in the tables")
    p.add_argument("--task", help="task label (default: run.dataset / reward)")
    p.add_argument("--out", required=True, help="the condition's JSON record")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--draws", type=int, default=32)
    p.add_argument("--sigmas", default="0,1,3")
    p.add_argument("--params", default="last:2", help="all | last:N | last:N+head")
    p.add_argument("--sketch-dim", type=int, default=65536)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the gradient probe")
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    rw = cfg.reward
    task = args.task or f"{cfg.run.dataset} / {rw.model_path if REWARD_KINDS[rw.kind].reads_model_path else rw.kind}"
    rec = measure_variance(cfg, policy_path=args.policy or cfg.model.path, policy_label=args.label,
                           task_label=task, out_json=args.out, prompts=args.prompts, draws=args.draws,
                           sigmas=tuple(float(s) for s in args.sigmas.split(",")), params=args.params,
                           sketch_dim=args.sketch_dim, seed=args.seed, threads=args.threads)
    print(render_variance_markdown([rec]))


if __name__ == "__main__":
    main()
