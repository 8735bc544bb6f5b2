"""``remax-ray repro``: ReMax against PPO, REINFORCE and baseline controls, per task, over seeds,
with verdicts on the paper's claims (arXiv 2310.10505).

- :mod:`.tasks`: the task names and their configuration overrides;
- :mod:`.plan`: which runs, with which configuration (validated before any actor starts);
- :mod:`.storage`: stored runs (skip the complete, redo the incomplete, refuse a changed config);
- :mod:`.machine`: the other load on the machine during a run, and the code's commit;
- :mod:`.matched_kl`: each run's reward against KL, and the reward at a common KL;
- :mod:`.summary`: per-run numbers from ``metrics.jsonl``; :mod:`.arms`: per-algorithm numbers;
- :mod:`.stats`: t-intervals, paired differences, seeds needed, verdict rules;
- :mod:`.claims`: the claims' verdicts (margins fixed there) and memory/speed beside the paper;
- :mod:`.paper`: the paper's and the authors' code's settings and figures, quoted;
- :mod:`.report`: ``results.md`` and ``results.json``;
- :mod:`.runner`: the orchestration (Ray actors; imported lazily) and the report from stored runs;
- :mod:`.variance`: each estimator's gradient variance and the paper's reward condition at fixed
  parameters, on paired draws (Ray actors; imported lazily), with :mod:`.variance_stats` (pure
  statistics), :mod:`.variance_sketch` (the count-sketch the per-sample gradients are kept in),
  :mod:`.variance_probe` (those gradients, on the driver) and :mod:`.variance_report` (tables).

May import: ``driver`` and everything below it. Only ``cli`` imports ``repro``.

Also :mod:`.command` (the CLI's ``repro``) and :mod:`.conditions`.
"""

from remax_ray.repro.claims import Verdict, reward_verdicts
from remax_ray.repro.plan import DEFAULT_ALGOS, DEFAULT_SEEDS, PlannedRun, parse_algos, parse_seeds, plan_runs
from remax_ray.repro.summary import RunSummary, summarize_run

__all__ = ["DEFAULT_ALGOS", "DEFAULT_SEEDS", "PlannedRun", "RunSummary", "Verdict", "parse_algos",
           "parse_seeds", "plan_runs", "reward_verdicts", "summarize_run"]
