"""The Learner's train_step against a plain torch ReMax step on the same batch, in one process.

Usage (after `remax-ray assets`; nothing else running):
    OMP_NUM_THREADS=2 .venv/bin/python bench/learner_vs_plain.py [--reps 3]

The batch is shaped like the embedded default's (16 movie-review prompts, 1 sample of up to 24 new
tokens, a quarter ending early on EOS; bench/learner_step.py builds it). The plain step is
bench/_pipeline_limits.py's (the pipeline bench's learn limit); the Learner is remax_ray's, with the
default LearnerConfig and AlgoConfig. Each runs once as a warm-up, then ``--reps`` times; the medians
and their ratio are printed, with the share of padding in the Learner's micro-batches (what packed,
padding-free micro-batches could save at most).
"""

from __future__ import annotations

import argparse
import statistics
import time

import _pipeline_limits as lim
from learner_step import synthetic_rollouts


def main() -> None:
    from transformers import AutoTokenizer

    from remax_ray.assets.home import resolve_dataset, resolve_model_path
    from remax_ray.config import AlgoConfig, LearnerConfig
    from remax_ray.data.prompts import read_jsonl_prompts
    from remax_ray.learner.learner import Learner

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    model = resolve_model_path("builtin:smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(model)
    prompts, _ = read_jsonl_prompts(resolve_dataset("builtin:movie-reviews", "train"))
    rollouts = synthetic_rollouts(tok, prompts[:16], 24, 0.25, 0)
    batch = lim.Batch(prompt_ids=[r.prompt_ids for r in rollouts],
                      samples=[[c.token_ids for c in r.samples] for r in rollouts],
                      sample_seeds=[[0] for _ in rollouts], greedy=[r.greedy.token_ids for r in rollouts],
                      prompts=[r.prompt for r in rollouts], texts=[["", ""] for _ in rollouts],
                      advantages=[[s - r.greedy_score for s in r.sample_scores] for r in rollouts])
    le, al = LearnerConfig(), AlgoConfig()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    plain, policy = lim.torch_step(model, batch, lr=le.lr, betas=(le.beta1, le.beta2), weight_decay=le.weight_decay,
                                   max_grad_norm=le.max_grad_norm, micro_batch_size=le.micro_batch_size,
                                   kl_coef=al.kl_coef, temperature=1.0, pad_id=pad, reps=args.reps)
    del policy
    learner = Learner(model, le, al, seed=0)
    times = []
    for _ in range(args.reps + 1):
        start = time.perf_counter()
        learner.train_step(rollouts)
        times.append(time.perf_counter() - start)
    ours = statistics.median(times[1:])
    exp = learner.make_experience(rollouts)
    cells = sum(m.batch.input_ids.numel() for m in exp.micro)
    real = sum(int(m.batch.attention_mask.sum()) for m in exp.micro)
    print(f"plain torch step {plain:.2f} s, Learner.train_step {ours:.2f} s: {ours / plain:.2f}x "
          f"(rounds {' '.join(f'{t:.2f}' for t in times[1:])}); padding {1 - real / cells:.1%} of the "
          f"micro-batches' {cells} token positions")


if __name__ == "__main__":
    main()
