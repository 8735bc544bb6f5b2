"""CPU transport: the learner's weights as safetensors bytes, in bounded buckets, with no disk.

Buckets never split a decoder layer: vLLM fuses q/k/v and gate/up into one parameter and reloads
layer by layer, so every tensor of ``model.layers.N`` must arrive in the same reload call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import torch
from safetensors.torch import save

_LAYER = re.compile(r"^(.*?layers\.\d+)\.")


def layer_group(name: str) -> str:
    """The reload unit a parameter belongs to: its decoder layer, or the tensor itself."""
    m = _LAYER.match(name)
    return m.group(1) if m else name


def group_named_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[list[tuple[str, torch.Tensor]]]:
    """Consecutive groups of (name, tensor) that must travel together, in model order."""
    groups: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in named:
        groups.setdefault(layer_group(name), []).append((name, tensor))
    return list(groups.values())


def pack_buckets(named: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int,
                 dtype: torch.dtype | None = None) -> Iterator[bytes]:
    """Yield safetensors blobs of about ``bucket_bytes`` each (a single layer may exceed it).

    ``dtype`` casts floating tensors first (e.g. the generator's dtype when it differs from the
    learner's master weights).
    """
    bucket: dict[str, torch.Tensor] = {}
    size = 0
    for group in group_named_tensors(named):
        tensors = {n: _cpu(t, dtype) for n, t in group}
        group_size = sum(t.numel() * t.element_size() for t in tensors.values())
        if bucket and size + group_size > bucket_bytes:
            yield save(bucket)
            bucket, size = {}, 0
        bucket.update(tensors)
        size += group_size
    if bucket:
        yield save(bucket)


def _cpu(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    t = t.detach()
    if dtype is not None and t.is_floating_point():
        t = t.to(dtype)
    return t.to("cpu").contiguous()
