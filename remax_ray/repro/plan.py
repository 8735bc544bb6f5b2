"""Which runs a reproduction makes and with which configuration; checked before any actor starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from remax_ray.config import Config, ConfigError, apply_overrides, validate

DEFAULT_ALGOS = ("remax", "ppo", "reinforce")
# Group baselines need at least two samples of the same prompt to compare.
GROUP_ALGOS = {"rloo": 2, "grpo": 2}


@dataclass(frozen=True)
class PlannedRun:
    algo: str
    seed: int
    cfg: Config
    overrides: tuple[str, ...]
    """The algorithm's overrides on top of the base configuration (seed and folder excluded)."""

    @property
    def name(self) -> str:
        return f"{self.algo}-seed{self.seed}"


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
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        seeds = [int(str(s).strip()) for s in items if str(s).strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    # A spread over seeds (mean ± std, "within seed noise") needs at least two distinct seeds.
    if len(set(seeds)) < 2 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: need at least two distinct seeds, got {text!r} (e.g. 0,1)")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds: seeds must be >= 0, got {text!r}")
    return seeds


def algo_overrides(base: Config, algo: str) -> list[str]:
    overrides = [f"algo.estimator={algo}"]
    need = GROUP_ALGOS.get(algo, 1)
    if base.rollout.samples_per_prompt < need:
        # Same prompts per step as the others; the group baseline costs extra samples per prompt.
        overrides.append(f"rollout.samples_per_prompt={need}")
    return overrides


def plan_runs(base: Config, algos: list[str], seeds: list[int], out_dir: str | Path) -> list[PlannedRun]:
    """Every (seed, algorithm) run, seeds outermost so slow drift of the machine hits all alike."""
    runs = []
    for seed in seeds:
        for algo in algos:
            ov = algo_overrides(base, algo)
            folder = Path(out_dir) / f"{algo}-seed{seed}"
            cfg = apply_overrides(base, [*ov, f"run.seed={seed}", f"run.output_dir={folder}"])
            try:
                validate(cfg)
            except ConfigError as e:
                raise ConfigError(f"{algo} (seed {seed}): {e}") from None
            runs.append(PlannedRun(algo, seed, cfg, tuple(ov)))
    check_shared_actors(runs)
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
            raise ConfigError(f"{run.name}: generator/reward settings differ from {runs[0].name}, "
                              "so they cannot share the generators and the reward actor")


def refuse_existing(runs: list[PlannedRun]) -> None:
    """metrics.jsonl is appended to: a leftover file would mix two reproductions' numbers."""
    stale = [str(Path(r.cfg.run.output_dir) / "metrics.jsonl") for r in runs
             if (Path(r.cfg.run.output_dir) / "metrics.jsonl").exists()]
    if stale:
        raise ConfigError(f"{stale[0]} already exists ({len(stale)} run folder(s) in use); "
                          "choose a new --out or delete the old runs")
