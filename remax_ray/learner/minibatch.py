"""PPO's mini-batches: which sequences share an optimizer step, the same for any number of ranks.

``learner.mini_batch_size`` counts sequences of the whole step's batch. With K learner ranks each rank
holds only its prompts' sequences, so a mini-batch is drawn over the whole batch (every rank draws
the same seeded permutation of every rank's sequences) and each rank then runs its share of it. One
learner and K ranks thus put the same sequences into each optimizer step and take the same number
of steps; only the split of a mini-batch into micro-batches differs, which changes the gradient by
float rounding alone (the losses are normalised by the mini-batch's global counts).

A sequence is named by (its prompt's position in the step's batch, its sample index): the order one
learner flattens the batch in (``batch.flatten_samples``), whatever shard a rank received.
"""

from __future__ import annotations

import math
from dataclasses import fields

import torch

from remax_ray.data.rollouts import PromptRollout
from remax_ray.learner.batch import SequenceBatch, empty_batch
from remax_ray.learner.experience import MicroExperience

SeqKey = tuple[int, int]


def sequence_keys(rollouts: list[PromptRollout], prompt_index: list[int] | None = None) -> list[SeqKey]:
    """(position of the prompt in the step's batch, sample index) of every sampled response of
    ``rollouts``, in ``flatten_samples`` order. ``prompt_index``: each rollout's position in the
    whole batch (None: ``rollouts`` is the whole batch)."""
    where = list(range(len(rollouts))) if prompt_index is None else prompt_index
    if len(where) != len(rollouts):
        raise ValueError(f"{len(where)} prompt positions for {len(rollouts)} rollouts")
    return [(p, j) for p, r in zip(where, rollouts) for j in range(len(r.samples))]


def mini_batch_plan(keys_by_rank: list[list[SeqKey]], size: int, generator: torch.Generator
                    ) -> list[list[list[int]]]:
    """One epoch's mini-batches of ``size`` sequences drawn over every rank's sequences: for each
    mini-batch, per rank, the indices (into that rank's own list) of its sequences in it.

    The permutation is drawn over the sequences sorted by key, so it does not depend on how they were
    sharded; a mini-batch's sequences keep batch order."""
    everyone = sorted((key, rank, i) for rank, keys in enumerate(keys_by_rank) for i, key in enumerate(keys))
    order = torch.randperm(len(everyone), generator=generator).tolist()
    plan = []
    for lo in range(0, len(order), size):
        per_rank: list[list[int]] = [[] for _ in keys_by_rank]
        for pos in sorted(order[lo : lo + size]):
            _, rank, i = everyone[pos]
            per_rank[rank].append(i)
        plan.append(per_rank)
    return plan


def micro_runs(share_sizes: list[int], micro_size: int) -> int:
    """Micro-batches every rank runs for one mini-batch: the most any rank needs (the others pad),
    so every collective of the forward and backward is matched."""
    return max(math.ceil(n / micro_size) for n in share_sizes)


def gather_rows(sources: list[tuple[MicroExperience, int]], pad_id: int) -> MicroExperience:
    """One micro-batch of the given (record, row) pairs, each row cut or padded to the new width.

    Rows are right-padded, so a row's first ``length`` columns (``length - 1`` in the shifted
    frame) are all it holds; pads are the pad id in ``input_ids`` and 0 elsewhere (off every mask)."""
    lengths = [int(me.batch.attention_mask[row].sum()) for me, row in sources]
    width = max(max(lengths), 2)

    def rows(get, fill, cols: int) -> torch.Tensor:
        out = []
        for me, row in sources:
            t = get(me)[row]
            out.append(t[:cols] if t.shape[0] >= cols else torch.cat([t, t.new_full((cols - t.shape[0],), fill)]))
        return torch.stack(out)

    input_ids = rows(lambda me: me.batch.input_ids, pad_id, width)
    batch = SequenceBatch(
        input_ids=input_ids,
        attention_mask=rows(lambda me: me.batch.attention_mask, 0, width),
        targets=input_ids[:, 1:],
        mask=rows(lambda me: me.batch.mask, 0, width - 1),
        score_advantages=torch.stack([me.batch.score_advantages[row] for me, row in sources]),
        gen_logprobs=rows(lambda me: me.batch.gen_logprobs, 0, width - 1),
        has_gen_logprobs=all(me.batch.has_gen_logprobs for me, _ in sources))
    out = MicroExperience(batch, ref_logp=None)
    for name in _TOKEN_FIELDS:
        if getattr(sources[0][0], name) is not None:
            setattr(out, name, rows(lambda me, n=name: getattr(me, n), 0, width - 1))
    return out


def padding_like(template: MicroExperience, pad_id: int, eos_token_ids: list[int]) -> MicroExperience:
    """An empty micro-batch (no token on its mask) with the same fields as ``template``."""
    batch = empty_batch(pad_id, eos_token_ids)
    out = MicroExperience(batch, ref_logp=None, padding=True)
    for name in _TOKEN_FIELDS:
        value = getattr(template, name)
        if value is not None:
            setattr(out, name, value.new_zeros(batch.mask.shape))
    return out


_TOKEN_FIELDS = tuple(f.name for f in fields(MicroExperience) if f.name not in ("batch", "padding", "rows"))
"""The [m, L-1] no-grad tensors of a record (``ref_logp``, ``old_logp``, ``old_values``, ...)."""
