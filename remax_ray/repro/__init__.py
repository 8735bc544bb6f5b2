"""``remax-ray repro``: ReMax against PPO and REINFORCE (optionally RLOO, GRPO) on one task.

- :mod:`.plan`: which runs, with which configuration (validated before any actor starts);
- :mod:`.summary`: per-run and per-algorithm numbers from ``metrics.jsonl`` records;
- :mod:`.claims`: the paper's claims as ratios with a verdict;
- :mod:`.report`: ``results.md`` and ``results.json``;
- :mod:`.runner`: the orchestration (Ray actors; imported lazily);
- :mod:`.variance`: each estimator's gradient variance and the paper's reward condition at fixed
  parameters, on paired draws (Ray actors; imported lazily), with :mod:`.variance_stats` (pure
  statistics), :mod:`.variance_sketch` (the count-sketch the per-sample gradients are kept in),
  :mod:`.variance_probe` (those gradients, on the driver) and :mod:`.variance_report` (tables).

May import: ``driver`` and everything below it. Only ``cli`` imports ``repro``.
"""

from remax_ray.repro.claims import Claim, evaluate_claims
from remax_ray.repro.plan import DEFAULT_ALGOS, PlannedRun, parse_algos, parse_seeds, plan_runs
from remax_ray.repro.summary import AlgoRow, RunSummary, aggregate, summarize_run

__all__ = ["AlgoRow", "Claim", "DEFAULT_ALGOS", "PlannedRun", "RunSummary", "aggregate",
           "evaluate_claims", "parse_algos", "parse_seeds", "plan_runs", "summarize_run"]
