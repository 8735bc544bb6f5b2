"""Collective transport: the learner broadcasts each tensor to every vLLM worker over a stateless
process group: NCCL between GPUs, gloo between CPUs.

The group is separate from vLLM's own torch.distributed state (vLLM's stateless helper), so it can
span processes that vLLM and Ray started independently. The learner is rank 0; generator g's worker
is rank 1 + g. Names, dtypes and shapes travel through Ray; only the tensor bytes use the group.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

import torch

TensorMeta = tuple[str, str, tuple[int, ...]]
"""(HF parameter name, torch dtype name, shape) for one broadcast tensor."""


def free_port() -> int:
    """A TCP port free on this node now, for the group's rendezvous store (hosted by rank 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def init_group(host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float | None = None):
    """Join the weight-sync group; blocks until all ``world_size`` ranks have joined.

    ``timeout_s`` bounds the rendezvous and every later broadcast: without it a broadcast whose
    peer died waits for the backend's default (10-30 minutes) before failing."""
    from datetime import timedelta

    from vllm.distributed.utils import stateless_init_torch_distributed_process_group

    timeout = timedelta(seconds=timeout_s) if timeout_s else None
    return stateless_init_torch_distributed_process_group(host, port, rank, world_size, backend, timeout=timeout)


def tensor_meta(named: Iterable[tuple[str, torch.Tensor]]) -> list[TensorMeta]:
    return [(name, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for name, t in named]


def broadcast_from_learner(group, named: Iterable[tuple[str, torch.Tensor]]) -> int:
    """Rank 0 sends every tensor in order; returns the bytes sent (per receiver)."""
    sent = 0
    for _, tensor in named:
        data = tensor.detach().contiguous()
        group.broadcast(data, 0).wait()
        sent += data.numel() * data.element_size()
    return sent


def receive_in_worker(group, meta: list[TensorMeta], device: torch.device) -> list[tuple[str, torch.Tensor]]:
    """Ranks >= 1 receive the tensors announced by ``meta``, in the same order."""
    out = []
    for name, dtype, shape in meta:
        buf = torch.empty(shape, dtype=getattr(torch, dtype), device=device)
        group.broadcast(buf, 0).wait()
        out.append((name, buf))
    return out
