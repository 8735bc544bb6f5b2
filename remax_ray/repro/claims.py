"""The paper's four claims (ReMax, arXiv 2310.10505) as ratios of measured numbers, with a verdict.

A claim whose algorithms were not run, or whose numbers are missing, gets ``holds=None`` ("n/a")
rather than a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from remax_ray.repro.summary import AlgoRow

MEMORY_TARGET = 0.6
TIME_TARGET = 0.6
VARIANCE_TARGET = 2.0


@dataclass
class Claim:
    name: str
    metric: str
    ratio: float
    """ReMax's number over the other algorithm's, except the variance claim (REINFORCE over ReMax)."""
    target: str
    holds: bool | None
    detail: str


def _finite(*xs: float) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def _ratio(a: float, b: float) -> float:
    return a / b if _finite(a, b) and b != 0 else float("nan")


def _seed_noise(a: AlgoRow, b: AlgoRow) -> float:
    """Standard error of the difference of two seed means: sqrt(s_a^2/n_a + s_b^2/n_b)."""
    return math.sqrt(a.final_reward_std ** 2 / len(a.seeds) + b.final_reward_std ** 2 / len(b.seeds))


def _missing(name: str, metric: str, target: str, need: str) -> Claim:
    return Claim(name, metric, float("nan"), target, None, f"n/a: needs {need}")


def reward_vs_ppo(remax: AlgoRow | None, ppo: AlgoRow | None) -> Claim:
    name, metric, target = "reward: ReMax vs PPO", "final greedy reward", "ReMax >= PPO - seed noise"
    if remax is None or ppo is None or not _finite(remax.final_reward_mean, ppo.final_reward_mean):
        return _missing(name, metric, target, "remax and ppo runs with final evaluations")
    diff = remax.final_reward_mean - ppo.final_reward_mean
    noise = _seed_noise(remax, ppo)
    holds = diff >= -noise if _finite(noise) else None
    return Claim(name, metric, _ratio(remax.final_reward_mean, ppo.final_reward_mean), target, holds,
                 f"difference {diff:+.4g}, seed noise (SE of the difference) {noise:.4g}")


def reward_vs_reinforce(remax: AlgoRow | None, reinforce: AlgoRow | None) -> Claim:
    name, metric, target = "reward: ReMax vs REINFORCE", "final greedy reward", "ReMax > REINFORCE"
    if remax is None or reinforce is None or not _finite(remax.final_reward_mean,
                                                         reinforce.final_reward_mean):
        return _missing(name, metric, target, "remax and reinforce runs with final evaluations")
    diff = remax.final_reward_mean - reinforce.final_reward_mean
    noise = _seed_noise(remax, reinforce)
    return Claim(name, metric, _ratio(remax.final_reward_mean, reinforce.final_reward_mean), target,
                 diff > 0, f"difference {diff:+.4g} (seed noise {noise:.4g}, for reference)")


def _at_most(name: str, metric: str, remax: AlgoRow | None, ppo: AlgoRow | None, key: str,
             limit: float) -> Claim:
    target = f"ReMax <= {limit:g} x PPO"
    if remax is None or ppo is None:
        return _missing(name, metric, target, "remax and ppo runs")
    a, b = _value(remax, key), _value(ppo, key)
    ratio = _ratio(a, b)
    if not _finite(ratio):
        return _missing(name, metric, target, f"{key} in both runs' metrics")
    return Claim(name, metric, ratio, target, ratio <= limit, f"ReMax {_fmt(a, key)}, PPO {_fmt(b, key)}")


def _fmt(x: float, key: str) -> str:
    return f"{x / 2 ** 20:.1f} MiB" if key.endswith("_bytes") else f"{x:.4g} s"


def _value(row: AlgoRow, key: str) -> float:
    return row.phase_s[key] if key in row.phase_s else getattr(row, key)


def variance_claim(remax: AlgoRow | None, reinforce: AlgoRow | None) -> Claim:
    name, metric = "gradient variance: REINFORCE vs ReMax", "grad_norm variance across steps"
    target = f"REINFORCE >= {VARIANCE_TARGET:g} x ReMax"
    if remax is None or reinforce is None:
        return _missing(name, metric, target, "remax and reinforce runs")
    ratio = _ratio(reinforce.grad_norm_var, remax.grad_norm_var)
    if not _finite(ratio):
        return _missing(name, metric, target, "at least two steps per run")
    return Claim(name, metric, ratio, target, ratio >= VARIANCE_TARGET,
                 f"REINFORCE {reinforce.grad_norm_var:.4g}, ReMax {remax.grad_norm_var:.4g}")


def evaluate_claims(rows: list[AlgoRow]) -> list[Claim]:
    by = {r.algo: r for r in rows}
    remax, ppo, reinforce = by.get("remax"), by.get("ppo"), by.get("reinforce")
    claims = [
        reward_vs_ppo(remax, ppo),
        reward_vs_reinforce(remax, reinforce),
        _at_most("memory: learner state", "learner_state_bytes (params + grads + optimizer state)",
                 remax, ppo, "learner_state_bytes", MEMORY_TARGET),
        _at_most("memory: learner peak RSS", "learner_peak_rss_bytes (whole learner process)",
                 remax, ppo, "learner_peak_rss_bytes", MEMORY_TARGET),
    ]
    if remax is not None and ppo is not None and _finite(remax.learner_cuda_peak_bytes,
                                                         ppo.learner_cuda_peak_bytes):
        claims.append(_at_most("memory: learner CUDA peak", "learner_cuda_peak_bytes", remax, ppo,
                               "learner_cuda_peak_bytes", MEMORY_TARGET))
    claims.append(_at_most("speed: seconds per step", "step_s (mean over steps after step 0)",
                           remax, ppo, "step_s", TIME_TARGET))
    claims.append(variance_claim(remax, reinforce))
    return claims
