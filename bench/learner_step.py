"""The learner's train_step on the real SmolLM2 policy, before and after each speed-up, in one run.

Usage (after `remax-ray assets`; REMAX_RAY_HOME as for training):
    nice -n 5 .venv/bin/python bench/learner_step.py [--reps 3] [--threads N]

One Learner (policy + reference, default LearnerConfig / AlgoConfig) trains on a synthetic batch
shaped like the default run: 16 movie-review prompts (their real token counts), 1 sample each of up
to 24 new tokens (a quarter end early with EOS), random scores and a greedy baseline score. The
changes are switched on one at a time through ``BenchLearner``'s flags, which keep the pre-change
code here (the library has only the new path):
  - full_logits: LM head and log-softmax at every position, entropy over all of them;
  - unsorted: micro-batches in prompt order instead of sorted by length;
  - always_reference: the reference forward even at algo.kl_coef 0;
  - the optimizer: AdamW's per-tensor loop (torch's CPU default) or fused (what the Learner builds);
  - torch's thread count: the before and after rows again with one thread fewer.
Variants run interleaved, one step each per round after a warm-up round, so a drift of the shared
machine's speed hits all of them alike; the median over rounds is reported, per trained sequence,
with its ratio to the "before" row of its block, beside this process's CPU seconds (a neighbour's
burst inflates wall time, much less CPU time) and the seconds of the experience stage and of the
optimizer step. Last, AdamW's step alone: the loop, foreach=True and fused, on the same parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import torch

from remax_ray.algo import token_logprobs
from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.data.rollouts import Completion, PromptRollout
from remax_ray.learner.batch import SequenceBatch
from remax_ray.learner.learner import Learner

# The plain entropy the old code path used lives with the tests now (tests/helpers.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from helpers import reference_entropy  # noqa: E402


class BenchLearner(Learner):
    """The Learner with the pre-change code paths behind flags (benchmark only)."""

    full_logits = False
    unsorted = False
    always_reference = False

    @property
    def measures_kl(self) -> bool:
        return self.always_reference or super().measures_kl

    def _score(self, model, mb: SequenceBatch, entropy: bool = False):
        if not self.full_logits:
            return super()._score(model, mb, entropy)
        # The path before this change: logits [m, L-1, V] at every position, then per-row fp32
        # log-softmax normalisers, and the entropy over every position (the mask applied after).
        with self._autocast():
            out = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False)
        logits = out.logits[:, :-1]
        logp = token_logprobs(logits, mb.targets, self.temperature)
        return logp, reference_entropy(logits.detach(), self.temperature) if entropy else None

    def _micro_batch_rows(self, items):
        if not self.unsorted:
            return super()._micro_batch_rows(items)
        size = self.cfg.micro_batch_size
        return [list(range(lo, min(lo + size, len(items)))) for lo in range(0, len(items), size)]

    def _optimizer_step(self) -> float:
        start = time.perf_counter()
        norm = super()._optimizer_step()
        self.optimizer_s = time.perf_counter() - start
        return norm

    def make_experience(self, rollouts):
        start = time.perf_counter()
        exp = super().make_experience(rollouts)
        self.experience_s = time.perf_counter() - start
        return exp


def synthetic_rollouts(tokenizer, prompts: list[str], new_tokens: int, eos_frac: float, seed: int
                       ) -> list[PromptRollout]:
    """One sampled response per prompt: random non-special tokens, ``new_tokens`` long, except a
    share ``eos_frac`` that stop early on EOS (as sampled reviews sometimes do)."""
    g = torch.Generator().manual_seed(seed)
    eos = tokenizer.eos_token_id
    out = []
    for i, text in enumerate(prompts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        length = new_tokens
        if torch.rand((), generator=g).item() < eos_frac:
            length = int(torch.randint(new_tokens // 3, new_tokens, (), generator=g))
        resp = torch.randint(100, tokenizer.vocab_size - 100, (length,), generator=g).tolist()
        if length < new_tokens:
            resp[-1] = eos
        scores = torch.randn(2, generator=g).tolist()
        out.append(PromptRollout(text, ids, [Completion(resp, "", "stop" if length < new_tokens else "length")],
                                 Completion(resp[:4], "", "length"), scores[:1], scores[1]))
    return out


def main() -> None:
    from transformers import AutoTokenizer

    from remax_ray.assets.home import resolve_dataset, resolve_model_path
    from remax_ray.data.prompts import read_jsonl_prompts

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:smollm2-135m-instruct")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--eos-frac", type=float, default=0.25)
    p.add_argument("--reps", type=int, default=3, help="timed rounds after the warm-up round")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = read_jsonl_prompts(resolve_dataset("builtin:movie-reviews", "train"))[0][: args.prompts]
    rollouts = synthetic_rollouts(tokenizer, prompts, args.new_tokens, args.eos_frac, seed=0)
    algo = AlgoConfig()  # remax, kl_coef 0.02 (the default run's)
    learner = BenchLearner(model, LearnerConfig(), algo, seed=0)
    params = list(learner.policy.parameters())
    cfg = learner.cfg
    adamw = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    optimizers = {"loop": torch.optim.AdamW(params, foreach=False, **adamw),  # torch's CPU default
                  "foreach": torch.optim.AdamW(params, foreach=True, **adamw),
                  "fused": learner.optimizer}  # what the Learner builds now (remax_ray/learner/optim.py)
    assert learner.optimizer.defaults["fused"] or learner.device.type not in ("cpu", "cuda")
    threads = torch.get_num_threads()
    kl0 = dataclasses.replace(algo, kl_coef=0.0)
    old = dict(full_logits=True, unsorted=True, always_reference=True)
    variants = [  # (label, algo, flags, optimizer, torch threads); a "before" row starts each block
        ("before: full logits, prompt order, AdamW loop", algo, old, "loop", threads),
        ("+ LM head at response positions", algo, {**old, "full_logits": False}, "loop", threads),
        ("+ length-sorted micro-batches", algo, {}, "loop", threads),
        ("+ AdamW fused (= after)", algo, {}, "fused", threads),
        ("kl_coef=0 before (reference forward runs)", kl0, old, "loop", threads),
        ("kl_coef=0 after (reference forward skipped)", kl0, {}, "fused", threads),
    ]
    if threads > 1:  # the learner's thread count: the same two settings on one thread fewer
        variants += [(f"{threads - 1} thread(s): before", algo, old, "loop", threads - 1),
                     (f"{threads - 1} thread(s): after", algo, {}, "fused", threads - 1)]
    times = {v[0]: [] for v in variants}
    parts = {v[0]: [] for v in variants}
    for round_ in range(args.reps + 1):  # round 0 warms up (allocator, AdamW state, head probe)
        for label, alg, flags, opt, n_threads in variants:
            torch.set_num_threads(n_threads)
            learner.algo = alg
            learner.full_logits, learner.unsorted, learner.always_reference = (
                flags.get(k, False) for k in ("full_logits", "unsorted", "always_reference"))
            learner.optimizer = optimizers[opt]
            start, cpu = time.perf_counter(), time.process_time()
            learner.train_step(rollouts)
            if round_:
                times[label].append(time.perf_counter() - start)
                parts[label].append((learner.experience_s, learner.optimizer_s, time.process_time() - cpu))
    torch.set_num_threads(threads)
    n_seqs = sum(len(r.samples) for r in rollouts)
    print(f"{n_seqs} sequences, prompt tokens {min(len(r.prompt_ids) for r in rollouts)}-"
          f"{max(len(r.prompt_ids) for r in rollouts)}, <= {args.new_tokens} new tokens, "
          f"micro_batch_size {cfg.micro_batch_size}, torch threads {threads}, "
          f"{args.reps} timed rounds (median)")
    # Wall seconds are what a step costs; CPU seconds of this process are printed beside them
    # because on a shared machine a neighbour's burst inflates wall time but not (much) CPU time.
    print(f"{'variant':46s} {'s/step':>7s} {'s/seq':>7s} {'speed-up':>8s} {'cpu s':>7s} {'cpu x':>6s} "
          f"{'exper. s':>8s} {'optim s':>7s}  wall s of each round")
    base = base_cpu = None
    for label, alg, flags, *_ in variants:
        med = statistics.median(times[label])
        exp_s, opt_s, cpu_s = (statistics.median(x[i] for x in parts[label]) for i in range(3))
        if flags is old:
            base, base_cpu = med, cpu_s
        rounds = " ".join(f"{t:.2f}" for t in times[label])
        print(f"{label:46s} {med:7.3f} {med / n_seqs:7.4f} {base / med:7.2f}x {cpu_s:7.2f} "
              f"{base_cpu / cpu_s:5.2f}x {exp_s:8.3f} {opt_s:7.3f}  {rounds}")
    print(optimizer_times(params, optimizers, args.reps + 2))


def optimizer_times(params: list[torch.nn.Parameter], optimizers: dict, calls: int) -> str:
    """AdamW's step alone on the policy's parameters, each implementation ``calls`` times in turn
    (median): gradients of the step's size, set to a fixed small value, since only the time counts."""
    for p in params:
        p.grad = torch.full_like(p, 1e-4)
    times = {name: [] for name in optimizers}
    for _ in range(calls):
        for name, opt in optimizers.items():
            start = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - start)
    loop = statistics.median(times["loop"])
    return "AdamW step alone: " + ", ".join(
        f"{name} {statistics.median(t):.3f} s ({loop / statistics.median(t):.2f}x)" for name, t in times.items())


if __name__ == "__main__":
    main()
