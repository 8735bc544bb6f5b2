"""Tests for remax_ray.learner.batch: rollouts -> padded tensors in the shifted frame."""

from __future__ import annotations

import pytest
import torch

from remax_ray.data.rollouts import Completion, PromptRollout
from remax_ray.learner.batch import SequenceBatch, build_batch, flatten_samples, micro_batches

EOS = 2
PAD = 0


def _c(ids: list[int], lp: list[float] | None = None, reason: str = "stop") -> Completion:
    return Completion(token_ids=ids, text=" ".join(map(str, ids)), finish_reason=reason, logprobs=lp)


# ---------------------------------------------------------------- flatten_samples


def test_flatten_samples_prompt_major_and_no_greedy() -> None:
    r1 = PromptRollout("a", [5, 6], samples=[_c([8], [-0.5]), _c([9, EOS], [-1.0, -2.0])],
                       greedy=_c([7, 7, 7], [-9.0, -9.0, -9.0]))
    r2 = PromptRollout("b", [4], samples=[_c([3, 3], None), _c([], [])], greedy=_c([1]))
    items = flatten_samples([r1, r2])
    assert items == [
        ([5, 6], [8], [-0.5]),
        ([5, 6], [9, EOS], [-1.0, -2.0]),
        ([4], [3, 3], None),
        ([4], [], []),
    ]
    assert flatten_samples([]) == []


# ---------------------------------------------------------------- build_batch, hand-computed


def _two_rows() -> SequenceBatch:
    items = [
        # A: prompt 3, response 2 (no EOS: hit the length limit) -> total 5
        ([5, 6, 7], [8, 9], [-0.1, -0.2]),
        # B: prompt 2, response 4 with EOS at response position 1 -> total 6
        ([5, 6], [8, EOS, 9, 9], [-1.0, -2.0, -3.0, -4.0]),
    ]
    return build_batch(items, torch.tensor([1.5, -0.5], dtype=torch.float64), [EOS], PAD)


def test_input_ids_and_attention_mask() -> None:
    b = _two_rows()
    # Width = longest prompt + response = max(3 + 2, 2 + 4) = 6; A is right-padded with PAD.
    assert b.input_ids.dtype == torch.long and b.attention_mask.dtype == torch.long
    assert b.input_ids.tolist() == [[5, 6, 7, 8, 9, PAD], [5, 6, 8, EOS, 9, 9]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
    assert b.targets.tolist() == [[6, 7, 8, 9, PAD], [6, 8, EOS, 9, 9]]
    assert len(b) == 2


def test_shifted_response_mask() -> None:
    b = _two_rows()
    # Column t predicts token t+1. A: p=3, r=2 -> ones at columns p-1..p+r-2 = 2..3
    # (targets 8 and 9). B: p=2, r=4 -> columns 1..4, but the response mask of [8, EOS, 9, 9] is
    # [1, 1, 0, 0] (EOS kept, what follows dropped) -> ones at columns 1..2 (targets 8 and EOS).
    assert b.mask.dtype == torch.float32
    assert b.mask.tolist() == [[0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
    # The masked targets are exactly the kept response tokens.
    assert b.targets[b.mask.bool()].tolist() == [8, 9, 8, EOS]


def test_gen_logprobs_placement() -> None:
    b = _two_rows()
    # Same columns as the response: A at 2..3, B at 1..4 (placed even after EOS; the mask drops them).
    expected = torch.tensor([[0.0, 0.0, -0.1, -0.2, 0.0], [0.0, -1.0, -2.0, -3.0, -4.0]])
    assert b.gen_logprobs.shape == (2, 5)
    assert torch.equal(b.gen_logprobs, expected)
    assert b.has_gen_logprobs is True


def test_score_advantages_are_float32() -> None:
    b = _two_rows()
    assert b.score_advantages.dtype == torch.float32
    assert b.score_advantages.tolist() == [1.5, -0.5]


def test_has_gen_logprobs_false_when_any_sample_lacks_them() -> None:
    items = [([5], [8, 9], [-1.0, -2.0]), ([5], [8], None)]
    b = build_batch(items, torch.zeros(2), [EOS], PAD)
    assert b.has_gen_logprobs is False
    # p=1: row 0 at columns 0..1; row 1 has none -> zeros.
    assert b.gen_logprobs.tolist() == [[-1.0, -2.0], [0.0, 0.0]]
    assert b.mask.tolist() == [[1, 1], [1, 0]]


def test_eos_first_token_keeps_only_eos() -> None:
    items = [([4, 4], [EOS, 7, 7], [-0.1, -0.2, -0.3])]
    b = build_batch(items, torch.zeros(1), [EOS], PAD)
    # p=2, r=3 -> columns 1..3; response mask [1, 0, 0] -> only column 1 (target EOS).
    assert b.mask.tolist() == [[0, 1, 0, 0]]
    assert b.targets[0, 1].item() == EOS


def test_several_eos_ids() -> None:
    items = [([4], [8, 3, 9], None), ([4], [8, 9, EOS], None)]
    b = build_batch(items, torch.zeros(2), [EOS, 3], PAD)
    # Row 0 ends at id 3, row 1 at id 2: [1, 1, 0] and [1, 1, 1] at columns 0..2.
    assert b.mask.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_pad_equal_to_eos_does_not_truncate_short_rows() -> None:
    # pad_id == eos (common: the tiny model pads with <|endoftext|>). Short row's padding is not
    # a response token, and a long row without EOS stays all ones.
    items = [([1, 1], [5], None), ([1], [5, 6, 7], None)]
    b = build_batch(items, torch.zeros(2), [EOS], pad_id=EOS)
    # Width max(3, 4) = 4. Row 0: p=2, r=1 -> column 1; row 1: p=1, r=3 -> columns 0..2.
    assert b.input_ids.tolist() == [[1, 1, 5, EOS], [1, 5, 6, 7]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert b.mask.tolist() == [[0, 1, 0], [1, 1, 1]]


def test_empty_response_has_no_mask_and_min_width_two() -> None:
    b = build_batch([([3], [], [])], torch.zeros(1), [EOS], PAD)
    # Width is at least 2 so that the shifted frame has a column: [3, PAD] -> one column, masked out.
    assert b.input_ids.tolist() == [[3, PAD]]
    assert b.attention_mask.tolist() == [[1, 0]]
    assert b.mask.tolist() == [[0.0]]
    assert b.gen_logprobs.tolist() == [[0.0]]
    assert b.has_gen_logprobs is True


def test_extra_logprobs_are_truncated_to_the_response() -> None:
    b = build_batch([([3, 3], [4], [-0.25, -7.0])], torch.zeros(1), [EOS], PAD)
    # p=2, r=1 -> only column 1 gets a log-prob (-0.25); the surplus -7.0 is ignored.
    assert b.gen_logprobs.tolist() == [[0.0, -0.25]]


def test_consistent_with_logits_frame() -> None:
    # The mask selects exactly the columns whose target (input_ids[:, t + 1]) is a response token
    # up to and including the first EOS.
    items = [([5, 6, 7], [8, EOS, 9], None), ([5], [6, 7, 8, 9], None), ([5, 5], [EOS], None)]
    b = build_batch(items, torch.zeros(3), [EOS], PAD)
    for i, (p, r, _) in enumerate(items):
        kept = r[: r.index(EOS) + 1] if EOS in r else r
        cols = [t for t in range(b.mask.shape[1]) if b.mask[i, t] == 1]
        assert cols == list(range(len(p) - 1, len(p) - 1 + len(kept)))
        assert b.targets[i, cols].tolist() == kept


@pytest.mark.parametrize("n", [1, 3])
def test_build_batch_from_rollouts(n: int) -> None:
    rollouts = [
        PromptRollout("x", [10, 11], samples=[_c([12 + k, EOS], [-0.5, -0.25]) for k in range(n)],
                      greedy=_c([12])),
        PromptRollout("y", [20], samples=[_c([21, 22, 23], [-1.0, -1.0, -1.0], "length")
                                          for _ in range(n)], greedy=_c([21])),
    ]
    items = flatten_samples(rollouts)
    b = build_batch(items, torch.arange(2 * n, dtype=torch.float32), [EOS], PAD)
    assert len(b) == 2 * n
    # Width = max(2 + 2, 1 + 3) = 4. x rows: columns 1..2; y rows: columns 0..2.
    assert b.mask[:n].tolist() == [[0, 1, 1]] * n
    assert b.mask[n:].tolist() == [[1, 1, 1]] * n
    assert b.input_ids[0].tolist() == [10, 11, 12, EOS]
    assert b.input_ids[n].tolist() == [20, 21, 22, 23]


# ---------------------------------------------------------------- micro_batches


def _items_of_lengths(lengths: list[int]) -> list[tuple[list[int], list[int], list[float] | None]]:
    # Prompt of 2 tokens, the rest response; the first response token encodes the item's index.
    return [([4, 4], [10 + i] + [7] * (n - 3), None) for i, n in enumerate(lengths)]


def test_micro_batches_in_prompt_order_are_consecutive_chunks() -> None:
    items = _items_of_lengths([9, 3, 8, 4, 7, 5])
    scores = torch.arange(6, dtype=torch.float32)
    out = micro_batches(items, scores, 4, [EOS], PAD)
    assert [len(b) for b in out] == [4, 2]
    assert out[0].input_ids[:, 2].tolist() == [10, 11, 12, 13]
    assert out[1].score_advantages.tolist() == [4.0, 5.0]
    assert [b.input_ids.shape[1] for b in out] == [9, 7]


def test_length_sorted_micro_batches_pad_less_and_keep_each_score_with_its_sequence() -> None:
    lengths = [9, 3, 8, 4, 7, 3]
    items = _items_of_lengths(lengths)
    scores = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    out = micro_batches(items, scores, 2, [EOS], PAD, sort_by_length=True)
    # Stable sort by length: 3 (item 1), 3 (item 5), 4 (3), 7 (4), 8 (2), 9 (0).
    assert [b.input_ids[:, 2].tolist() for b in out] == [[11, 15], [13, 14], [12, 10]]
    assert [b.score_advantages.tolist() for b in out] == [[1.5, 5.5], [3.5, 4.5], [2.5, 0.5]]
    padded = sum(b.input_ids.numel() for b in out)
    unsorted = sum(b.input_ids.numel() for b in micro_batches(items, scores, 2, [EOS], PAD))
    assert (padded, unsorted) == (2 * (3 + 7 + 9), 2 * (9 + 8 + 7))  # 38 columns instead of 48
    # Every sequence appears once, with its mask unchanged by the regrouping.
    assert sum(b.mask.sum().item() for b in out) == sum(n - 2 for n in lengths)
