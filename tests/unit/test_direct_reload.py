"""``concat_rows``: a fused projection (q/k/v, gate/up) is a view of the arena when its parts lie
back to back there, and a copy otherwise; the values are ``torch.cat``'s either way."""

from __future__ import annotations

import torch

from remax_ray.rollout.direct_reload import concat_rows
from remax_ray.sync.cpu import arena_layout


def _arena_views(shapes, gap_after=None, dtype=torch.float32):
    """Tensors laid out in one buffer as the learner writes a bucket (64-byte aligned offsets)."""
    sizes = [int(torch.Size(s).numel()) * dtype.itemsize for s in shapes]
    offsets, total = arena_layout(sizes)
    if gap_after is not None:  # push later tensors one alignment unit further
        offsets = [o + (64 if i > gap_after else 0) for i, o in enumerate(offsets)]
        total += 64
    buf = torch.zeros(total, dtype=torch.uint8)
    views = [buf[o : o + n].view(dtype).view(s) for o, n, s in zip(offsets, sizes, shapes)]
    for i, v in enumerate(views):
        v.copy_(torch.arange(v.numel(), dtype=dtype).view(v.shape) + 1000 * i)
    return buf, views


def test_back_to_back_parts_are_one_view_of_the_buffer():
    buf, (q, k, v) = _arena_views([(8, 4), (4, 4), (4, 4)])
    fused = concat_rows([q, k, v])
    assert torch.equal(fused, torch.cat([q, k, v]))
    assert fused.data_ptr() == q.data_ptr() and fused.shape == (16, 4)
    buf.zero_()  # a view: it sees the buffer change
    assert not fused.any()


def test_parts_with_a_gap_or_out_of_order_are_concatenated():
    _, (q, k, v) = _arena_views([(8, 4), (4, 4), (4, 4)], gap_after=0)
    fused = concat_rows([q, k, v])
    assert torch.equal(fused, torch.cat([q, k, v])) and fused.data_ptr() != q.data_ptr()
    _, (a, b) = _arena_views([(4, 4), (4, 4)])
    swapped = concat_rows([b, a])
    assert torch.equal(swapped, torch.cat([b, a])) and swapped.data_ptr() != b.data_ptr()


def test_parts_in_different_buffers_or_of_different_dtypes_are_concatenated():
    _, (a,) = _arena_views([(4, 4)])
    _, (b,) = _arena_views([(4, 4)])
    assert torch.equal(concat_rows([a, b]), torch.cat([a, b]))
    _, (c, d) = _arena_views([(4, 4), (4, 4)])
    mixed = [c, d.view(torch.int32)]  # same bytes, other dtype: never fused into one view
    assert concat_rows(mixed).data_ptr() != c.data_ptr()


def test_one_part_is_returned_as_is_and_biases_fuse_too():
    _, (w,) = _arena_views([(4, 4)])
    assert concat_rows([w]) is w
    _, (bq, bk, bv) = _arena_views([(16,), (16,), (16,)])
    fused = concat_rows([bq, bk, bv])
    assert fused.shape == (48,) and fused.data_ptr() == bq.data_ptr()
    assert torch.equal(fused, torch.cat([bq, bk, bv]))
