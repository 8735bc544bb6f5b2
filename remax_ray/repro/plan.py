"""Which runs a reproduction makes and with which configuration; checked before any actor starts.

A run is one (task, algorithm, seed); its folder is ``<out>/<task>/<algo>-seed<k>``. Each task's base
configuration is the embedded default (or --config), then the repro's evaluation settings, then the
task's overrides, then the user's; each run adds its algorithm's overrides, its seed and its folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from remax_ray.config import Config, ConfigError, apply_overrides, load_config, validate
from remax_ray.repro.tasks import task_overrides

# Every arm runs with the base configuration's learning rate: the comparison is of estimators, not
# of tuning. Each arm samples at least its estimator's min_samples per prompt (algo_overrides): rloo
# gets two, the same two generations per prompt as ReMax's sample + greedy; reinforce_mean is
# REINFORCE with a batch-mean baseline.
DEFAULT_ALGOS = ("remax", "ppo", "reinforce", "rloo", "reinforce_mean")
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
# The held-out evaluation the verdicts rest on. The sampled reward (the objective) needs several
# samples per prompt: 64 prompts x 4 samples, with the ~1.0 sd of one response's reward measured on
# the default task (docs/repro/README.md), give a standard error near 1/16 per evaluation, a third
# of the 0.2 difference the verdicts are sized for (claims.EFFECT_OF_INTEREST).
MIN_EVAL_PROMPTS = 64
MIN_EVAL_SAMPLES = 4
# Every arm samples on-policy (overlap would add a one-step lag to some arms' runs and not others'),
# and the KV cache stays the fixed 1 GiB the stored runs were made with: a cache sized to the run
# would batch the evaluation's 320 sequences differently, and stored runs would no longer match.
REPRO_DEFAULTS = (f"run.eval_prompts={MIN_EVAL_PROMPTS}", f"run.eval_samples={MIN_EVAL_SAMPLES}",
                  "rollout.overlap=false", "rollout.kv_cache_gib=1.0")


@dataclass(frozen=True)
class PlannedRun:
    task: str
    algo: str
    seed: int
    cfg: Config
    overrides: tuple[str, ...]
    """The algorithm's overrides on top of the task's base configuration (seed and folder excluded)."""

    @property
    def name(self) -> str:
        return f"{self.algo}-seed{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.task}/{self.name}"

    @property
    def folder(self) -> Path:
        return Path(self.cfg.run.output_dir)


def run_folder(out_dir: str | Path, task: str, algo: str, seed: int) -> Path:
    return Path(out_dir) / task / f"{algo}-seed{seed}"


def parse_algos(text: str | list[str]) -> list[str]:
    from remax_ray.algo import ESTIMATORS

    algos = [a.strip() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    if not algos:
        raise ConfigError("--algos: give at least one algorithm, e.g. remax,ppo,reinforce")
    unknown = [a for a in algos if a not in ESTIMATORS]
    if unknown:
        raise ConfigError(f"--algos: unknown algorithm(s) {', '.join(map(repr, unknown))}; "
                          f"valid: {', '.join(ESTIMATORS)}")
    if len(set(algos)) != len(algos):
        raise ConfigError(f"--algos: an algorithm is listed twice in {','.join(algos)}")
    return algos


def parse_seeds(text: str | list[int]) -> list[int]:
    """Distinct seeds >= 0. One seed is allowed (runs are stored, so seeds can be added over several
    sittings); the report calls a comparison inconclusive until two seeds of each arm are stored."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        seeds = [int(str(s).strip()) for s in items if str(s).strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: need distinct seeds, got {text!r} (e.g. 0,1,2,3,4)")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds: seeds must be >= 0, got {text!r}")
    return seeds


def task_base(config_path: str | None, task: str, overrides: list[str]) -> Config:
    """A task's base configuration; the user's overrides come last, so they win."""
    return load_config(config_path, [*REPRO_DEFAULTS, *task_overrides(task), *overrides])


def algo_overrides(base: Config, algo: str) -> list[str]:
    from remax_ray.algo import get_estimator  # here: it imports torch, which the CLI's start does not need

    overrides = [f"algo.estimator={algo}"]
    need = get_estimator(algo).min_samples
    if base.rollout.samples_per_prompt < need:
        # Same prompts per step as the others; a group baseline costs extra samples per prompt.
        overrides.append(f"rollout.samples_per_prompt={need}")
    return overrides


def plan_runs(bases: dict[str, Config], algos: list[str], seeds: list[int],
              out_dir: str | Path) -> list[PlannedRun]:
    """Every (task, seed, algorithm) run; within a task seeds are outermost, so slow drift of the
    machine hits all algorithms alike."""
    runs = []
    for task, base in bases.items():
        task_runs = []
        for seed in seeds:
            for algo in algos:
                ov = algo_overrides(base, algo)
                folder = run_folder(out_dir, task, algo, seed)
                cfg = apply_overrides(base, [*ov, f"run.seed={seed}", f"run.output_dir={folder}"])
                try:
                    validate(cfg)
                except ConfigError as e:
                    raise ConfigError(f"{task}/{algo} (seed {seed}): {e}") from None
                task_runs.append(PlannedRun(task, algo, seed, cfg, tuple(ov)))
        check_shared_actors(task_runs)
        runs += task_runs
    return runs


def shared_actor_settings(cfg: Config) -> dict:
    """What the shared generators and reward actor were built from; it must not vary between runs.

    samples_per_prompt and the seed are arguments of each generate() call, not engine settings.
    """
    rollout = {k: v for k, v in cfg.to_dict()["rollout"].items() if k != "samples_per_prompt"}
    d = cfg.to_dict()
    return {"model": d["model"], "rollout": rollout, "reward": d["reward"], "cluster": d["cluster"]}


def check_shared_actors(runs: list[PlannedRun]) -> None:
    first = shared_actor_settings(runs[0].cfg)
    for run in runs[1:]:
        if shared_actor_settings(run.cfg) != first:
            raise ConfigError(f"{run.label}: generator/reward settings differ from {runs[0].label}, "
                              "so they cannot share the generators and the reward actor")
