"""Turn rollouts into padded learner tensors, in the "shifted" frame where column t predicts token t+1.

Working in that frame for every sequence (prompt and response concatenated, right-padded) avoids a
per-row gather: the response mask simply selects the columns whose targets are response tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from remax_ray.algo import response_mask
from remax_ray.data.rollouts import PromptRollout


@dataclass
class SequenceBatch:
    """N = prompts x samples sequences; L = longest prompt + response in this (micro-)batch."""

    input_ids: torch.Tensor  # [N, L] long, right-padded
    attention_mask: torch.Tensor  # [N, L] long
    targets: torch.Tensor  # [N, L-1] long: input_ids[:, 1:]
    mask: torch.Tensor  # [N, L-1] float: 1 where the target is a kept response token
    score_advantages: torch.Tensor  # [N] float
    gen_logprobs: torch.Tensor  # [N, L-1] float: vLLM's sampled-token log-probs (0 where absent)
    has_gen_logprobs: bool

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def flatten_samples(rollouts: list[PromptRollout]) -> list[tuple[list[int], list[int], list[float] | None]]:
    """(prompt_ids, response_ids, vLLM log-probs) for every sampled response, prompt-major order."""
    return [(r.prompt_ids, s.token_ids, s.logprobs) for r in rollouts for s in r.samples]


def check_behaviour_logprobs(items: list[tuple[list[int], list[int], list[float] | None]]) -> None:
    """ValueError unless every sampled response came with the generator's log-prob of each of its
    tokens: the importance weights of ``rollout.overlap`` need them all. A sample without them cannot
    be corrected, and training it as if on-policy would silently turn the correction off."""
    missing = [k for k, (_, r, lp) in enumerate(items) if lp is None or len(lp) < len(r)]
    if missing:
        raise ValueError(
            f"importance correction (rollout.overlap, algo.importance_cap) needs the generator's log-prob "
            f"of every sampled token, but {len(missing)} of {len(items)} sampled responses came with no "
            f"log-probs for some of their tokens (the first: sample {missing[0]}, prompt-major); the "
            "generators must return them (Completion.logprobs)")


def build_batch(items: list[tuple[list[int], list[int], list[float] | None]], score_adv: torch.Tensor,
                eos_token_ids: list[int], pad_id: int) -> SequenceBatch:
    """Pad ``items`` into one SequenceBatch; ``score_adv`` is [len(items)]."""
    lengths = [len(p) + len(r) for p, r, _ in items]
    width = max(max(lengths), 2)
    n = len(items)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    resp = torch.full((n, max(1, max(len(r) for _, r, _ in items))), pad_id, dtype=torch.long)
    gen_lp = torch.zeros((n, width - 1))
    have_lp = all(lp is not None for _, _, lp in items)
    for i, (p, r, lp) in enumerate(items):
        input_ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        attention[i, : len(p) + len(r)] = 1
        resp[i, : len(r)] = torch.tensor(r, dtype=torch.long) if r else resp[i, :0]
        if lp is not None and r:
            gen_lp[i, len(p) - 1 : len(p) - 1 + len(r)] = torch.tensor(lp[: len(r)])
    resp_lengths = torch.tensor([len(r) for _, r, _ in items])
    rmask = response_mask(resp, eos_token_ids, resp_lengths)  # [N, R]
    mask = torch.zeros((n, width - 1))
    for i, (p, r, _) in enumerate(items):
        mask[i, len(p) - 1 : len(p) - 1 + len(r)] = rmask[i, : len(r)]
    return SequenceBatch(input_ids, attention, input_ids[:, 1:], mask, score_adv.float(), gen_lp, have_lp)


def micro_batch_rows(items: list[tuple[list[int], list[int], list[float] | None]], size: int,
                     sort_by_length: bool = False) -> list[list[int]]:
    """Which of ``items`` share each micro-batch of ``size``: in order, or with ``sort_by_length``
    first ordered by prompt + response length (stable, so equal lengths keep their order).

    Each micro-batch is padded to its own longest sequence, so sorting puts similar lengths together
    and less padding is computed. The losses are normalised by counts over the whole optimizer step,
    so the accumulated gradient is the same sum whatever the grouping (up to float rounding); which
    sequences share an optimizer step (PPO's mini-batches) is decided elsewhere (``minibatch.py``)."""
    order = list(range(len(items)))
    if sort_by_length:
        order.sort(key=lambda i: len(items[i][0]) + len(items[i][1]))
    return [order[lo : lo + size] for lo in range(0, len(order), size)]


def micro_batches(items: list[tuple[list[int], list[int], list[float] | None]], score_adv: torch.Tensor,
                  size: int, eos_token_ids: list[int], pad_id: int, sort_by_length: bool = False
                  ) -> list[SequenceBatch]:
    """``items`` (with their [len(items)] ``score_adv``) padded into the micro-batches of
    :func:`micro_batch_rows`."""
    return [build_batch([items[i] for i in rows], score_adv[rows], eos_token_ids, pad_id)
            for rows in micro_batch_rows(items, size, sort_by_length)]


def empty_batch(pad_id: int, eos_token_ids: list[int]) -> SequenceBatch:
    """A one-sequence micro-batch with no token on its mask: its loss and counts are 0, but its
    forward and backward run, so a learner rank with fewer micro-batches than the others still
    joins every collective of the update."""
    batch = build_batch([([pad_id], [pad_id], None)], torch.zeros(1), eos_token_ids, pad_id)
    batch.mask.zero_()
    return batch
