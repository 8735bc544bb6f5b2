"""Variance of the policy-gradient estimators at FIXED parameters, on the real default task.

The paper's variance claim (ReMax's greedy baseline vs plain REINFORCE) is about the estimator at a
given policy. `remax-ray repro` can only report the variance of the grad-norm across training steps,
which also moves as the policy changes. This benchmark holds the policy fixed. It draws M independent
sample sets for the same P prompts (one sample per prompt, seeds differ by draw) and scores them with
the default reward model. For each draw it computes the exact step gradient, with no KL term and no
optimizer step, for three estimators:
  ReMax       A = r(sample) - r(greedy)
  REINFORCE   A = r(sample)
  REINFORCE + c: A = r(sample) + c. A Bradley-Terry reward model is only defined up to such a shift, so
    c is the offset that any particular fit happens to land on. Its gradient is g_0 + c * h, with h the
    gradient for A = 1, so every c comes from the same two backward passes.
All three estimators use the same samples (a paired comparison), and each estimator's variance is
E||g - E g||^2, estimated over the draws with M - 1 degrees of freedom.

The fuller measurement (paired draws from the generator actors, REINFORCE with a batch-mean baseline
and RLOO too, per-prompt reward offsets, bootstrap CIs, a JSON record per condition) is
`remax_ray.repro.variance.measure_variance`; this script stays for quick exact checks on few draws.

Usage (after `remax-ray assets`):  .venv/bin/python bench/grad_variance.py [--draws 8] [--prompts 16]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch

# The gradient probe is shared with the tests (tests/helpers.py): a Learner has no bench hooks.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from helpers import policy_gradient  # noqa: E402


class Moments:
    """Running sums for E||g - E g||^2 of one estimator without keeping every gradient."""

    def __init__(self) -> None:
        self.n, self.total, self.sq = 0, None, 0.0

    def add(self, g: torch.Tensor) -> None:
        g = g.double()
        self.n += 1
        self.total = g.clone() if self.total is None else self.total + g
        self.sq += float(g @ g)

    def variance(self) -> float:
        return (self.sq - float(self.total @ self.total) / self.n) / (self.n - 1)

    def mean_norm(self) -> float:
        return float(self.total.norm()) / self.n


def _with_scores(rollouts, fn):
    out = copy.deepcopy(rollouts)
    for r in out:
        r.sample_scores = [fn(s) for s in r.sample_scores]
    return out


def main() -> None:
    from remax_ray.assets.home import assets_home, resolve_dataset, resolve_reward_model_path
    from remax_ray.config import AlgoConfig, LearnerConfig
    from remax_ray.data.prompts import read_jsonl_prompts
    from remax_ray.learner.learner import Learner
    from remax_ray.reward.scorer import RewardScorer
    from remax_ray.rollout.generator import Generator

    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(assets_home() / "smollm2-135m-instruct"))
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--offsets", default="0,1,3", help="reward shifts c for REINFORCE + c")
    args = p.parse_args()
    offsets = [float(c) for c in args.offsets.split(",")]
    prompts = read_jsonl_prompts(resolve_dataset("builtin:movie-reviews", "train"))[0][: args.prompts]

    start = time.perf_counter()
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")  # phases take turns: every core to vLLM
    gen = Generator(args.model, max_prompt_tokens=64, max_new_tokens=24, temperature=1.0)
    scorer = RewardScorer("hf", model_path=resolve_reward_model_path("builtin:sentiment-rm"),
                          score_response_only=True)
    # kl_coef=0: the estimators differ only in the baseline; the KL term would add the same to all.
    remax = Learner(args.model, LearnerConfig(micro_batch_size=8), AlgoConfig(estimator="remax", kl_coef=0.0))
    reinforce = Learner(args.model, LearnerConfig(micro_batch_size=8),
                        AlgoConfig(estimator="reinforce", kl_coef=0.0))
    moments = {"remax": Moments(), "reinforce_g0": Moments(), "ones_h": Moments()}
    cross = 0.0  # sum over draws of g0 . h, for Var(g0 + c h)
    stats = {"sample": [], "greedy": []}
    for draw in range(args.draws):
        rollouts = gen.generate(prompts, n=1, step=draw, first_index=0, run_seed=0, greedy=True)
        texts = [c.text for r in rollouts for c in (r.samples[0], r.greedy)]
        scores = scorer.score([r.prompt for r in rollouts for _ in range(2)], texts)
        for i, r in enumerate(rollouts):
            r.sample_scores, r.greedy_score = [scores[2 * i]], scores[2 * i + 1]
        stats["sample"] += [r.sample_scores[0] for r in rollouts]
        stats["greedy"] += [r.greedy_score for r in rollouts]
        moments["remax"].add(policy_gradient(remax, rollouts))
        g0 = policy_gradient(reinforce, rollouts)
        h = policy_gradient(reinforce, _with_scores(rollouts, lambda s: 1.0))
        moments["reinforce_g0"].add(g0)
        moments["ones_h"].add(h)
        cross += float(g0.double() @ h.double())
        print(f"draw {draw + 1}/{args.draws} done ({time.perf_counter() - start:.0f} s)", flush=True)

    n = args.draws
    g0m, hm = moments["reinforce_g0"], moments["ones_h"]

    def shifted_variance(c: float) -> float:
        sq = g0m.sq + 2 * c * cross + c * c * hm.sq
        total = g0m.total + c * hm.total
        return (sq - float(total @ total) / n) / (n - 1)

    s, g = torch.tensor(stats["sample"]), torch.tensor(stats["greedy"])
    corr = float(torch.corrcoef(torch.stack([s, g]))[0, 1])
    print(f"\n{args.prompts} prompts x {n} draws; reward of samples mean {s.mean():.3f} std {s.std():.3f}; "
          f"greedy mean {g.mean():.3f}; corr(sample, greedy) {corr:.3f}; std(sample - greedy) "
          f"{(s - g).std():.3f}")
    v_remax = moments["remax"].variance()
    print(f"{'estimator':22s} {'E||g-Eg||^2':>12s} {'||E g||':>10s} {'var / ReMax':>12s}")
    print(f"{'remax':22s} {v_remax:12.4g} {moments['remax'].mean_norm():10.4g} {1.0:12.3f}")
    for c in offsets:
        v = shifted_variance(c)
        norm = float((g0m.total + c * hm.total).norm()) / n
        print(f"{f'reinforce + {c:g}':22s} {v:12.4g} {norm:10.4g} {v / v_remax:12.3f}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
