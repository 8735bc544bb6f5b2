"""Tests for remax_ray.sync.cpu: layer grouping and bounded buckets of raw tensor bytes."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from remax_ray.sync.cpu import Bucket, WeightBuckets, layer_group, plan_buckets

from helpers import bucket_tensors


def pack_buckets(named, bucket_bytes: int, dtype: torch.dtype | None = None) -> list[Bucket]:
    """Every bucket of a WeightBuckets, built in order (as a sync asks for them)."""
    buckets = WeightBuckets(named, bucket_bytes, dtype)
    return [buckets[k] for k in range(len(buckets))]


def _unpack(buckets: list[Bucket]) -> list[dict[str, torch.Tensor]]:
    return [dict(bucket_tensors(b)) for b in buckets]


def _nbytes(bucket: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in bucket.values())


# ---------------------------------------------------------------- layer_group


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("model.layers.0.self_attn.q_proj.weight", "model.layers.0"),
        ("model.layers.3.mlp.down_proj.weight", "model.layers.3"),
        ("model.layers.10.input_layernorm.weight", "model.layers.10"),  # not "model.layers.1"
        ("model.embed_tokens.weight", "model.embed_tokens.weight"),
        ("model.norm.weight", "model.norm.weight"),
        ("lm_head.weight", "lm_head.weight"),
        ("transformer.h.0.attn.weight", "transformer.h.0.attn.weight"),  # no "layers.N": itself
        # Nested "layers": the outermost decoder layer is the unit.
        ("model.layers.2.mlp.experts.layers.5.w", "model.layers.2"),
        ("model.vision.encoder.layers.4.fc.weight", "model.vision.encoder.layers.4"),
    ],
)
def test_layer_group(name: str, group: str) -> None:
    assert layer_group(name) == group


def test_layer_groups_keep_model_order_and_travel_together() -> None:
    """With a bound of 0 bytes every layer group gets a bucket of its own: the buckets are the groups."""
    sizes = [
        ("model.embed_tokens.weight", 4),
        ("model.layers.0.a", 4),
        ("model.layers.0.b", 4),
        ("model.layers.1.a", 4),
        ("model.layers.0.c", 4),  # out of order: still joins layer 0's group
        ("lm_head.weight", 4),
    ]
    assert plan_buckets(sizes, 0) == [
        ["model.embed_tokens.weight"],
        ["model.layers.0.a", "model.layers.0.b", "model.layers.0.c"],
        ["model.layers.1.a"],
        ["lm_head.weight"],
    ]


# ---------------------------------------------------------------- buckets of hand-made tensors


def _toy() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        ("model.embed_tokens.weight", torch.randn(10, generator=g)),  # 10 * 4 = 40 B
        ("model.layers.0.a", torch.randn(4, generator=g)),  # 16 B \ layer 0: 32 B
        ("model.layers.0.b", torch.randn(4, generator=g)),  # 16 B /
        ("model.layers.1.a", torch.randn(2, 4, generator=g)),  # layer 1: 8 * 4 = 32 B
        ("model.norm.weight", torch.randn(2, generator=g)),  # 8 B
    ]


def test_round_trip_is_exact() -> None:
    named = _toy()
    buckets = _unpack(list(pack_buckets(named, bucket_bytes=1 << 20)))
    assert len(buckets) == 1  # 40 + 32 + 32 + 8 = 112 B <= 1 MiB
    (got,) = buckets
    assert set(got) == {n for n, _ in named}
    for name, t in named:
        assert got[name].dtype == t.dtype and got[name].shape == t.shape
        assert torch.equal(got[name], t)


def test_hand_computed_bucket_split() -> None:
    # bound 48 B: embed (40) -> open bucket; +layer0 (32) = 72 > 48 -> flush [embed];
    # layer0 (32) + layer1 (32) = 64 > 48 -> flush [layer0]; layer1 (32) + norm (8) = 40 <= 48 -> keep;
    # end -> flush [layer1, norm].
    buckets = _unpack(list(pack_buckets(_toy(), bucket_bytes=48)))
    assert [sorted(b) for b in buckets] == [
        ["model.embed_tokens.weight"],
        ["model.layers.0.a", "model.layers.0.b"],
        ["model.layers.1.a", "model.norm.weight"],
    ]
    assert [_nbytes(b) for b in buckets] == [40, 32, 40]


def test_exact_fit_stays_in_one_bucket() -> None:
    # bound 72 B: embed 40 + layer0 32 = 72, not > 72 -> same bucket; + layer1 -> 104 > 72 -> flush;
    # layer1 32 + norm 8 = 40 -> last bucket.
    buckets = _unpack(list(pack_buckets(_toy(), bucket_bytes=72)))
    assert [_nbytes(b) for b in buckets] == [72, 40]


def test_tiny_bucket_never_splits_a_layer() -> None:
    # 1 byte: every group overflows, so each group is a bucket of its own (4 groups -> 4 buckets),
    # and the two tensors of layer 0 still travel together.
    buckets = _unpack(list(pack_buckets(_toy(), bucket_bytes=1)))
    assert [sorted(b) for b in buckets] == [
        ["model.embed_tokens.weight"],
        ["model.layers.0.a", "model.layers.0.b"],
        ["model.layers.1.a"],
        ["model.norm.weight"],
    ]


def test_oversized_group_gets_its_own_bucket() -> None:
    named = [
        ("a", torch.zeros(2)),  # 8 B
        ("model.layers.0.w", torch.zeros(100)),  # 400 B > bound
        ("b", torch.zeros(2)),  # 8 B
        ("c", torch.zeros(2)),  # 8 B
    ]
    # bound 20: [a] (8; +400 > 20 flush), [layer0] alone (400), then b + c = 16 <= 20.
    buckets = _unpack(list(pack_buckets(named, bucket_bytes=20)))
    assert [sorted(b) for b in buckets] == [["a"], ["model.layers.0.w"], ["b", "c"]]
    for b in buckets:
        assert _nbytes(b) <= 20 or len({layer_group(k) for k in b}) == 1


def test_empty_input_yields_nothing() -> None:
    assert list(pack_buckets([], bucket_bytes=10)) == []


def test_dtype_casts_only_floating_tensors() -> None:
    named = [
        ("w32", torch.tensor([1.0, 0.1, -3.5], dtype=torch.float32)),
        ("w16", torch.tensor([0.5, 2.0], dtype=torch.float16)),
        ("idx", torch.tensor([1, 2, 3], dtype=torch.int64)),
        ("flag", torch.tensor([True, False])),
    ]
    (got,) = _unpack(list(pack_buckets(named, bucket_bytes=1 << 20, dtype=torch.bfloat16)))
    assert got["w32"].dtype == torch.bfloat16
    assert got["w16"].dtype == torch.bfloat16
    # 0.1 is not representable in bfloat16 (8 mantissa bits): it rounds to 0.10009765625.
    assert got["w32"].tolist() == [1.0, 0.10009765625, -3.5]
    assert torch.equal(got["w32"], named[0][1].to(torch.bfloat16))
    assert got["w16"].tolist() == [0.5, 2.0]
    assert got["idx"].dtype == torch.int64 and got["idx"].tolist() == [1, 2, 3]
    assert got["flag"].dtype == torch.bool and got["flag"].tolist() == [True, False]


def test_dtype_changes_the_byte_accounting() -> None:
    # 10 float32 = 40 B, but 20 B once cast to bfloat16: two 10-element groups fit a 40 B bound only
    # after the cast (40 + 40 = 80 > 40; 20 + 20 = 40 <= 40).
    named = [("a", torch.zeros(10)), ("b", torch.zeros(10))]
    assert len(list(pack_buckets(named, bucket_bytes=40))) == 2
    assert len(list(pack_buckets(named, bucket_bytes=40, dtype=torch.bfloat16))) == 1


def test_non_contiguous_and_grad_tensors() -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    p = torch.nn.Parameter(torch.ones(3))
    named = [("t", base.t()), ("p", p)]  # a transposed view and a parameter that requires grad
    (got,) = _unpack(list(pack_buckets(named, bucket_bytes=1 << 20)))
    assert torch.equal(got["t"], base.t())
    assert got["t"].shape == (4, 3)
    assert torch.equal(got["p"], torch.ones(3))
    assert not got["p"].requires_grad


# ---------------------------------------------------------------- a real tiny Llama

# Sizes with hidden 64, intermediate 128, 1 head of dim 64, vocab 64 (float32, 4 B each):
#   embed_tokens / lm_head: 64 * 64 * 4 = 16384 B
#   one decoder layer: q, k, v, o 4 * 64*64 + gate, up, down 3 * 64*128 + 2 norms * 64
#                      = 16384 + 24576 + 128 = 41088 params = 164352 B
#   final norm: 64 * 4 = 256 B
EMBED_B, LAYER_B, NORM_B = 16384, 164352, 256


def _llama(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=1, num_key_value_heads=1, tie_word_embeddings=tied)
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def llama(request) -> tuple[LlamaForCausalLM, bool]:
    return _llama(request.param), request.param


def test_llama_sizes_match_hand_count(llama) -> None:
    model, tied = llama
    sizes = {}
    for name, p in model.named_parameters():
        g = layer_group(name)
        sizes[g] = sizes.get(g, 0) + p.numel() * p.element_size()
    expected = {"model.embed_tokens.weight": EMBED_B, "model.layers.0": LAYER_B,
                "model.layers.1": LAYER_B, "model.layers.2": LAYER_B, "model.norm.weight": NORM_B}
    if not tied:
        expected["lm_head.weight"] = EMBED_B
    assert sizes == expected


def test_llama_round_trip_and_no_duplicates(llama) -> None:
    model, tied = llama
    named = list(model.named_parameters())
    buckets = _unpack(list(pack_buckets(named, bucket_bytes=1)))
    keys = [k for b in buckets for k in b]
    assert len(keys) == len(set(keys)) == len(named)
    # The tied model has one shared embedding: named_parameters() lists it once, and so does the blob.
    assert ("lm_head.weight" in keys) == (not tied)
    assert "model.embed_tokens.weight" in keys
    flat = {k: v for b in buckets for k, v in b.items()}
    for name, p in named:
        assert torch.equal(flat[name], p.detach())
    # A 1-byte bound gives one bucket per group: embed, 3 layers, norm (+ lm_head when untied).
    assert len(buckets) == (5 if tied else 6)
    for b in buckets:
        assert len({layer_group(k) for k in b}) == 1


def test_llama_layers_never_split(llama) -> None:
    model, _ = llama
    n_layer_params = sum(1 for n, _ in model.named_parameters() if n.startswith("model.layers.0."))
    assert n_layer_params == 9  # q, k, v, o, gate, up, down, 2 norms
    for bound in [1, 1000, 100_000, LAYER_B, LAYER_B + 1, 2 * LAYER_B]:
        buckets = _unpack(list(pack_buckets(model.named_parameters(), bucket_bytes=bound)))
        home: dict[str, int] = {}
        for i, b in enumerate(buckets):
            for k in b:
                assert home.setdefault(layer_group(k), i) == i, f"{layer_group(k)} split at bound {bound}"
            # Over the bound only when the bucket is a single oversized group.
            assert _nbytes(b) <= bound or len({layer_group(k) for k in b}) == 1


def test_llama_hand_computed_buckets(llama) -> None:
    model, tied = llama
    bound = EMBED_B + LAYER_B  # 180736
    # embed 16384 + layer0 164352 = 180736, not > bound -> bucket 1;
    # + layer1 -> 345088 > bound -> flush; layer1 + layer2 > bound -> flush [layer1];
    # layer2 + norm = 164608 <= bound; + lm_head = 180992 > bound -> flush; [lm_head] last (untied).
    buckets = _unpack(list(pack_buckets(model.named_parameters(), bucket_bytes=bound)))
    groups = [sorted({layer_group(k) for k in b}) for b in buckets]
    expected = [
        ["model.embed_tokens.weight", "model.layers.0"],
        ["model.layers.1"],
        ["model.layers.2", "model.norm.weight"],
    ]
    if not tied:
        expected.append(["lm_head.weight"])
    assert groups == expected
    assert [_nbytes(b) for b in buckets][:3] == [180736, 164352, 164608]


def test_llama_bfloat16_cast(llama) -> None:
    model, _ = llama
    named = list(model.named_parameters())
    buckets = _unpack(list(pack_buckets(named, bucket_bytes=1 << 30, dtype=torch.bfloat16)))
    assert len(buckets) == 1
    (got,) = buckets
    for name, p in named:
        assert got[name].dtype == torch.bfloat16
        assert torch.equal(got[name], p.detach().to(torch.bfloat16))
    # Half the float32 bytes: (3 * 164352 + 16384 + 256 [+ 16384]) / 2.
    total32 = 3 * LAYER_B + EMBED_B + NORM_B + (0 if "lm_head.weight" not in got else EMBED_B)
    assert _nbytes(got) == total32 // 2
