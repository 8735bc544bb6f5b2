"""Padding-free (packed) micro-batches against the learner's padded ones: the policy's forward and
backward over the same sequences, in one process, interleaved.

Usage (after `remax-ray assets`; nothing else running):
    OMP_NUM_THREADS=2 .venv/bin/python bench/packing.py [--reps 4]

Sixteen sequences shaped like the embedded default's (prompts of 15-30 tokens, 24 new tokens, a
quarter ending early), sorted by length into the learner's two micro-batches of 8. Padded: each
micro-batch right-padded to its longest sequence with an attention mask (what the learner does).
Packed: each micro-batch as one row, positions restarting at every sequence, so transformers' SDPA
attention gets a block-diagonal causal mask (no padded position is computed; attention then spans the
row's length). Prints the padding share, both medians and packed / padded, after checking that a
packed sequence's hidden states match the sequence run alone.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from remax_ray.assets.home import resolve_model_path

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=4)
    args = p.parse_args()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("builtin:smollm2-135m-instruct"),
                                                 dtype=torch.float32)
    backbone = model.base_model
    rng = random.Random(0)
    lengths = sorted(rng.randint(15, 30) + (24 if rng.random() > 0.25 else rng.randint(5, 23)) for _ in range(16))
    seqs = [torch.randint(100, 40000, (n,)) for n in lengths]
    micro = [seqs[:8], seqs[8:]]

    def padded() -> None:
        for chunk in micro:
            width = max(len(s) for s in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            attention = torch.zeros_like(ids)
            for i, s in enumerate(chunk):
                ids[i, : len(s)], attention[i, : len(s)] = s, 1
            hidden = backbone(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state
            (hidden * attention[..., None]).square().mean().backward()

    def packed_row(chunk):
        return torch.cat(chunk)[None], torch.cat([torch.arange(len(s)) for s in chunk])[None]

    def packed() -> None:
        for chunk in micro:
            ids, positions = packed_row(chunk)
            backbone(input_ids=ids, position_ids=positions, use_cache=False).last_hidden_state.square().mean().backward()

    with torch.no_grad():  # the block-diagonal mask really separates the sequences
        ids, positions = packed_row(micro[0])
        row = backbone(input_ids=ids, position_ids=positions, use_cache=False).last_hidden_state[0]
        alone = backbone(input_ids=micro[0][1][None], use_cache=False).last_hidden_state[0]
        start = len(micro[0][0])
        drift = (row[start : start + len(micro[0][1])] - alone).abs().max().item()
    assert drift < 1e-3, f"packed hidden states differ from the sequence alone by {drift}"

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    padded(), packed()  # warm-up
    times: dict[str, list[float]] = {"padded": [], "packed": []}
    for _ in range(args.reps):
        times["padded"].append(timed(padded))
        times["packed"].append(timed(packed))
    cells = sum(max(len(s) for s in chunk) * len(chunk) for chunk in micro)
    pad, pack = statistics.median(times["padded"]), statistics.median(times["packed"])
    print(f"padding {1 - sum(lengths) / cells:.1%} of the padded positions; max |packed - alone| {drift:.1e}")
    print(f"forward + backward, median of {args.reps}: padded {pad:.2f} s, packed {pack:.2f} s: "
          f"packed / padded {pack / pad:.3f}")


if __name__ == "__main__":
    main()
