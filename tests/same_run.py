"""What the reliability and chaos tests compare: a run that survived deaths against an uninterrupted
run of the same configuration (per-step metrics, sample tables, final weights).

Imported as ``same_run`` (``tests/`` is on ``sys.path``, as for ``helpers``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

STEPS, PROMPTS_PER_STEP = 4, 4
SURVIVAL_COUNTERS = ("actor_retries", "generator_resyncs", "learner_restarts")
"""What differs between a run that survived deaths and one that saw none: the counts of them."""


def overrides(tiny_model: Path, prompt_file: Path, out: Path) -> list[str]:
    return [f"model.path={tiny_model}", f"run.dataset={prompt_file}", f"run.output_dir={out}",
            f"run.steps={STEPS}", f"run.prompts_per_step={PROMPTS_PER_STEP}", "run.save_every=2",
            "run.eval_every=2", "run.eval_prompts=4", "rollout.samples_per_prompt=2",
            "rollout.max_new_tokens=8", "rollout.max_prompt_tokens=32", "reward.kind=vader",
            "learner.lr=1e-3", "algo.kl_coef=0.05", "run.progress=false"]


def deterministic(record: dict) -> dict:
    """What must repeat exactly: everything but wall-clock times and process memory."""
    return {k: v for k, v in record.items()
            if not (k.endswith("_s") or "rss" in k or "peak" in k)}


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    folder = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    return load_file(folder / "model.safetensors")


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def assert_same_run(out: Path, reference: Path, ignore: tuple[str, ...] = ()) -> None:
    """``out`` equals ``reference`` bit for bit, the counters in ``ignore`` aside."""
    def comparable(r: dict) -> dict:
        return {k: v for k, v in deterministic(r).items() if k not in ignore}

    ours, theirs = records(out), records(reference)
    assert [comparable(r) for r in ours] == [comparable(r) for r in theirs]
    train_steps = [r["step"] for r in ours if "loss" in r]
    assert train_steps == list(range(STEPS))  # no step repeated or skipped
    assert [r["prompts_consumed"] for r in ours if "loss" in r] == [PROMPTS_PER_STEP * (k + 1) for k in range(STEPS)]
    # Each evaluation's sample table once, with the same answers as the uninterrupted run's.
    assert samples(out) == samples(reference) and {r["step"] for r in samples(out)} == {0, 2, 4}
    a, b = final_weights(out), final_weights(reference)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
