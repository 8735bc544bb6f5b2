"""The uniform-adapter fast path of vLLM-CPU's LoRA ops (rollout/lora_kernels.py) against vLLM's own ops."""

from __future__ import annotations

import pytest
import torch

from remax_ray.rollout import lora_kernels

ops = pytest.importorskip("vllm.lora.ops.torch_ops")


def _case(tokens: int, indices: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, 24, generator=g)
    a = torch.randn(2, 1, 8, 24, generator=g)  # [slots, 1, rank, in], as vLLM stacks them
    b = torch.randn(2, 1, 40, 8, generator=g)  # [slots, 1, out, rank]
    return x, a, b, torch.tensor(indices)


@pytest.mark.parametrize("indices", [[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [0, 1, 1, 0, 1]])
def test_shrink_expand_and_slices_equal_vllms_ops(indices):
    x, a, b, idx = _case(len(indices), indices)
    want, got = torch.zeros(5, 8), torch.zeros(5, 8)
    ops.bgmv_shrink(x, a, want, idx, 0.5)
    lora_kernels._shrink(ops.bgmv_shrink)(x, a, got, idx, 0.5)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    base = torch.randn(5, 40)
    want_y, got_y = base.clone(), base.clone()
    ops.bgmv_expand(want, b, want_y, idx, True)
    lora_kernels._expand(ops.bgmv_expand)(want, b, got_y, idx, True)
    torch.testing.assert_close(got_y, want_y, rtol=1e-6, atol=1e-5)
    want_s, got_s = torch.zeros(5, 100), torch.zeros(5, 100)
    ops.bgmv_expand_slice(want, b, want_s, idx, 30, 40, False)
    lora_kernels._expand_slice(ops.bgmv_expand_slice)(want, b, got_s, idx, 30, 40, False)
    torch.testing.assert_close(got_s, want_s, rtol=1e-6, atol=1e-5)


def test_prefill_segments_expand_per_sequence_indices():
    x, a, b, _ = _case(5, [1] * 5)
    seq_lens, per_seq = torch.tensor([2, 3]), torch.tensor([1, 1])
    meta = (torch.tensor([0, 2]), seq_lens, per_seq, 2, 3, 5)
    want, got = torch.zeros(5, 8), torch.zeros(5, 8)
    ops.sgmv_shrink(x, a, want, *meta, 2.0)
    lora_kernels._segments(lora_kernels._shrink(ops.bgmv_shrink))(x, a, got, *meta, 2.0)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_install_is_idempotent_and_routes_the_cpu_wrapper():
    from vllm.lora.punica_wrapper import punica_cpu

    assert lora_kernels.install() and lora_kernels.install()
    assert punica_cpu.bgmv_shrink.__module__ == lora_kernels.__name__
    assert punica_cpu.bgmv_shrink.__closure__[0].cell_contents is ops.bgmv_shrink  # wrapped once
