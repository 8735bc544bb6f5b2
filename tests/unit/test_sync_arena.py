"""Tests for the CPU sync's plumbing in remax_ray.sync.cpu: the bucket plan, buckets built on demand
as views of the weights, the arena layout, and the shared arena read back through /proc the way the
vLLM worker process reads it (here from the same process, which opens the same path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from remax_ray.sync.cpu import ALIGN, ArenaReader, SharedArena, WeightBuckets, arena_layout, plan_buckets

from helpers import bucket_tensors

# ---------------------------------------------------------------- plan_buckets


def test_plan_keeps_layers_whole_and_fills_to_the_bound() -> None:
    sizes = [("model.embed_tokens.weight", 40), ("model.layers.0.a", 16), ("model.layers.0.b", 16),
             ("model.layers.1.a", 32), ("model.norm.weight", 8)]
    # bound 48: embed 40 (+32 > 48: flush), layer 0 = 32 (+32 > 48: flush), layer 1 32 + norm 8 = 40.
    assert plan_buckets(sizes, 48) == [["model.embed_tokens.weight"], ["model.layers.0.a", "model.layers.0.b"],
                                       ["model.layers.1.a", "model.norm.weight"]]
    # bound 72: 40 + 32 = 72 is not over it; + layer 1 is.
    assert plan_buckets(sizes, 72) == [["model.embed_tokens.weight", "model.layers.0.a", "model.layers.0.b"],
                                       ["model.layers.1.a", "model.norm.weight"]]
    assert plan_buckets(sizes, 1 << 20) == [[n for n, _ in sizes]]
    assert plan_buckets([], 10) == []


def test_plan_gathers_a_layer_whose_tensors_are_not_adjacent() -> None:
    sizes = [("model.layers.0.a", 4), ("model.layers.1.a", 4), ("model.layers.0.b", 4)]
    assert plan_buckets(sizes, 1) == [["model.layers.0.a", "model.layers.0.b"], ["model.layers.1.a"]]


# ---------------------------------------------------------------- WeightBuckets


def test_buckets_are_views_of_the_weights_when_no_cast_is_needed() -> None:
    w = torch.nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))
    (bucket,) = [WeightBuckets([("w", w)], 1 << 20)[0]]
    assert bucket.names == ["w"] and bucket.dtypes == ["float32"] and bucket.shapes == [(2, 3)]
    assert bucket.arrays[0].dtype == np.uint8 and bucket.nbytes == 24
    # No copy: the array is the parameter's own memory (Ray then copies it into the object store once).
    assert bucket.arrays[0].ctypes.data == w.data_ptr()


def test_buckets_are_built_from_the_current_values() -> None:
    w = torch.nn.Parameter(torch.zeros(3))
    buckets = WeightBuckets([("w", w)], 1 << 20)  # planned now, built on indexing
    with torch.no_grad():
        w.add_(2.5)  # an optimizer step between two syncs
    assert dict(bucket_tensors(buckets[0]))["w"].tolist() == [2.5, 2.5, 2.5]


def test_cast_buckets_are_planned_with_the_sent_size() -> None:
    named = [("a", torch.zeros(10)), ("b", torch.zeros(10)), ("i", torch.zeros(2, dtype=torch.int64))]
    assert len(WeightBuckets(named, 40)) == 3  # float32: 40 B each, int64 16 B
    cast = WeightBuckets(named, 40, torch.bfloat16)  # bfloat16: 20 + 20 = 40 fits; the int64 stays 16 B
    assert len(cast) == 2
    got = dict(bucket_tensors(cast[0])) | dict(bucket_tensors(cast[1]))
    assert got["a"].dtype == torch.bfloat16 and got["i"].dtype == torch.int64


def test_read_only_arrays_are_copied_before_viewing() -> None:
    bucket = WeightBuckets([("w", torch.ones(4))], 1 << 20)[0]
    bucket.arrays = [a.copy() for a in bucket.arrays]
    for a in bucket.arrays:
        a.flags.writeable = False  # what ray.get returns: a view of the immutable object store
    (name, t), = bucket_tensors(bucket)
    assert name == "w" and t.tolist() == [1.0] * 4
    t.add_(1)  # a copy: writing to it leaves the object store's bytes alone
    assert bucket.arrays[0].view(np.float32).tolist() == [1.0] * 4


# ---------------------------------------------------------------- arena_layout


def test_layout_aligns_every_tensor() -> None:
    offsets, total = arena_layout([10, 64, 1, 0, 3])
    assert offsets == [0, 64, 128, 192, 192] and total == 195
    assert all(o % ALIGN == 0 for o in offsets)
    assert arena_layout([]) == ([], 0)
    assert arena_layout([5, 5], align=4) == ([0, 8], 13)


# ---------------------------------------------------------------- SharedArena / ArenaReader


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "bf16": torch.randn(7, generator=g).to(torch.bfloat16),
        "i64": torch.tensor([[1, -2], [3, 2**40]]),
        "flag": torch.tensor([True, False, True]),
        "scalar": torch.tensor(0.25),
        "empty": torch.zeros(0, 4),
    }


def _round_trip(arena: SharedArena, reader: ArenaReader, tensors: dict[str, torch.Tensor]):
    bucket = WeightBuckets(list(tensors.items()), 1 << 30)[0]
    where = arena.write(bucket.arrays)
    return where, dict(reader.tensors(where, bucket.names, bucket.dtypes, [list(s) for s in bucket.shapes]))


def test_arena_round_trip_is_exact_for_every_dtype_and_shape() -> None:
    arena, reader = SharedArena(), ArenaReader()
    try:
        tensors = _tensors()
        where, got = _round_trip(arena, reader, tensors)
        assert where.path.startswith("/proc/") and where.capacity % 2**20 == 0
        assert set(got) == set(tensors)
        for name, t in tensors.items():
            assert got[name].dtype == t.dtype and got[name].shape == t.shape, name
            assert torch.equal(got[name], t), name
    finally:
        reader.close()
        arena.close()


def test_the_reader_sees_the_next_bucket_through_the_same_mapping() -> None:
    arena, reader = SharedArena(), ArenaReader()
    try:
        first, got = _round_trip(arena, reader, {"w": torch.full((4,), 1.0)})
        assert got["w"].tolist() == [1.0] * 4
        del got
        second, got = _round_trip(arena, reader, {"v": torch.full((2,), 7.0)})
        assert (second.path, second.generation) == (first.path, first.generation)  # no re-creation
        assert got["v"].tolist() == [7.0, 7.0]
    finally:
        reader.close()
        arena.close()


def test_the_arena_grows_and_the_reader_maps_the_new_one() -> None:
    arena, reader = SharedArena(), ArenaReader()
    try:
        small, _ = _round_trip(arena, reader, {"w": torch.ones(4)})
        big = torch.arange(2**19, dtype=torch.float32)  # 2 MiB: more than the first 1 MiB arena
        grown, got = _round_trip(arena, reader, {"big": big})
        assert grown.generation != small.generation and grown.capacity == 2 * 2**20
        assert torch.equal(got["big"], big)
    finally:
        reader.close()
        arena.close()


def test_the_arena_is_memory_shared_with_the_reader() -> None:
    # The worker's views are the generator's pages, not a copy: a later write shows through.
    arena, reader = SharedArena(), ArenaReader()
    try:
        where, got = _round_trip(arena, reader, {"w": torch.zeros(4)})
        arena.write([np.full(16, 0x3F, dtype=np.uint8)])  # 0x3F3F3F3F is float32 0.74705880...
        assert got["w"].tolist() == [pytest.approx(0.7470588088035583)] * 4
    finally:
        del got
        reader.close()
        arena.close()


# ---------------------------------------------------------------- the learner writes into shared memory


def test_the_learner_writes_a_bucket_straight_into_the_arena() -> None:
    # One node: WeightBuckets.write copies each parameter into the arena (cast included) and the
    # worker reads the same values the object-store path would have carried.
    tensors = _tensors()
    named = list(tensors.items())
    arena, reader = SharedArena(), ArenaReader()
    try:
        for dtype in (None, torch.bfloat16):
            buckets = WeightBuckets(named, 1 << 30, dtype)
            shared = buckets.write(0, arena)
            assert shared.names == buckets[0].names and shared.dtypes == buckets[0].dtypes
            assert shared.shapes == buckets[0].shapes and shared.nbytes == buckets[0].nbytes
            got = dict(reader.tensors(shared.where, shared.names, shared.dtypes, [list(s) for s in shared.shapes]))
            for name, t in tensors.items():
                want = t.to(dtype) if dtype is not None and t.is_floating_point() else t
                assert got[name].dtype == want.dtype and torch.equal(got[name], want), name
            del got
    finally:
        reader.close()
        arena.close()


def test_a_rank_without_an_arena_only_joins_the_gathers() -> None:
    assert WeightBuckets([("w", torch.ones(3))], 1 << 20).write(0, None) is None


def test_two_alternating_arenas_stay_mapped_and_never_share_a_generation() -> None:
    # The learner alternates two arenas (bucket k in arena k % 2); the worker keeps both mapped.
    arenas, reader = (SharedArena(), SharedArena()), ArenaReader()
    named = [(f"model.layers.{i}.w", torch.full((4,), float(i))) for i in range(4)]
    buckets = WeightBuckets(named, 16)  # one layer per bucket
    try:
        seen = []
        for k in range(len(buckets)):
            shared = buckets.write(k, arenas[k % 2])
            (name, t), = reader.tensors(shared.where, shared.names, shared.dtypes, [list(s) for s in shared.shapes])
            assert name == f"model.layers.{k}.w" and t.tolist() == [float(k)] * 4
            seen.append((shared.where.path, shared.where.generation))
            del t
        assert seen[0] == seen[2] and seen[1] == seen[3] and seen[0] != seen[1]
        assert arenas[0].generation != arenas[1].generation
        assert len(reader._maps) == 2
    finally:
        reader.close()
        for a in arenas:
            a.close()


def test_a_fused_projection_read_from_the_arena_is_a_view_of_it() -> None:
    # direct_reload fuses q/k/v (gate/up) with concat_rows, which copies unless the parts share one
    # storage: the reader's tensors must be views of one buffer over the arena, not one each.
    from remax_ray.rollout.direct_reload import concat_rows

    parts = {f"model.layers.0.self_attn.{p}_proj.weight": torch.full((rows, 16), float(i))
             for i, (p, rows) in enumerate([("q", 8), ("k", 4), ("v", 4)])}
    arena, reader = SharedArena(), ArenaReader()
    try:
        shared = WeightBuckets(list(parts.items()), 1 << 20).write(0, arena)
        got = reader.tensors(shared.where, shared.names, shared.dtypes, [list(s) for s in shared.shapes])
        fused = concat_rows([t for _, t in got])
        assert torch.equal(fused, torch.cat(list(parts.values())))
        assert fused.data_ptr() == got[0][1].data_ptr()
        arena.write([np.zeros(fused.nbytes, dtype=np.uint8)])  # the next bucket shows through
        assert not fused.any()
    finally:
        del got, fused
        reader.close()
        arena.close()
