"""Collective transport: the learner broadcasts its weights to every vLLM worker over a stateless
process group: NCCL between GPUs, gloo between CPUs.

- The group is separate from vLLM's own torch.distributed state (vLLM's stateless helper), so it can
  span processes that vLLM and Ray started independently.
- Ranks: the learner is rank 0; every worker of every engine has a rank of its own
  (:func:`group_ranks`): a tensor-parallel engine runs several workers, each of which loads its
  shard from the full tensors.
- Buckets: the same plan as the CPU transport (``sync/cpu.plan_buckets``: whole decoder layers),
  in the generators' dtype. The learner casts a bucket's tensors into one flat buffer and
  broadcasts it once; each worker receives into one buffer, views the tensors in it and reloads
  that layer group before the next bucket arrives. Neither end ever stages more than one bucket
  beyond the model. Names, dtypes, shapes and offsets (:class:`BucketLayout`) travel through Ray
  once, on the first sync; only the bytes use the group.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from remax_ray.sync.cpu import arena_layout, layer_group, plan_buckets, sent_dtype


def group_ranks(worker_counts: Sequence[int]) -> tuple[list[int], int]:
    """The rank of each engine's first worker, and the group's world size.

    ``worker_counts[g]``: how many vLLM workers engine g runs (tensor x pipeline parallel). The
    learner is rank 0; engine g's workers follow those of engines 0..g-1, so its worker with local
    rank w is rank ``offsets[g] + w``."""
    if any(count < 1 for count in worker_counts):
        raise ValueError(f"every engine runs at least one worker, got counts {list(worker_counts)}")
    offsets, next_rank = [], 1
    for count in worker_counts:
        offsets.append(next_rank)
        next_rank += count
    return offsets, next_rank


def listen_socket(host: str) -> socket.socket:
    """A socket listening on a port the OS picks, for the rendezvous store that rank 0 hosts.

    Rank 0 keeps it open from the moment its port is reported until :func:`init_group` hands it to
    the store (vLLM's helper passes it to torch's ``TCPStore(master_listen_fd=...)``), so no other
    process can take the port in between. Binding a free port, closing it and binding it again
    later is a race with every other process on the node that asks for a port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


def init_group(host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float | None = None,
               listen: socket.socket | None = None):
    """Join the weight-sync group; blocks until all ``world_size`` ranks have joined.

    ``listen``: rank 0's :func:`listen_socket` (the store takes it over). ``timeout_s`` bounds the
    rendezvous and every later broadcast: without it a broadcast whose peer died waits for the
    backend's default (10-30 minutes) before failing."""
    from datetime import timedelta

    from vllm.distributed.utils import stateless_init_torch_distributed_process_group

    if listen is not None and rank != 0:
        raise ValueError("only rank 0 hosts the rendezvous store (its listening socket)")
    timeout = timedelta(seconds=timeout_s) if timeout_s else None
    try:
        return stateless_init_torch_distributed_process_group(host, port, rank, world_size, backend,
                                                              timeout=timeout, listen_socket=listen)
    except OSError as err:
        # When the store fails (e.g. a rank never joined), vLLM 0.32 closes the listening socket's
        # fd again after torch's TCPStore already took and closed it: the EBADF would hide the
        # store's own error, which names the cause.
        if err.errno == errno.EBADF and listen is not None and isinstance(err.__context__, Exception):
            raise err.__context__ from None
        raise


@dataclass(frozen=True)
class BucketLayout:
    """One bucket as the group sends it: tensor ``names[i]`` (``dtypes[i]``, ``shapes[i]``) lies at
    byte ``offsets[i]`` of a flat buffer of ``nbytes`` bytes."""

    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    nbytes: int

    def as_rpc(self) -> list:
        """Plain lists: vLLM's ``collective_rpc`` sends its arguments by msgpack."""
        return [list(self.names), list(self.dtypes), [list(s) for s in self.shapes], list(self.offsets),
                self.nbytes]

    @classmethod
    def from_rpc(cls, fields: Sequence) -> BucketLayout:
        names, dtypes, shapes, offsets, nbytes = fields
        return cls(tuple(names), tuple(dtypes), tuple(tuple(s) for s in shapes), tuple(offsets), int(nbytes))


def plan_layouts(named: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int,
                 dtype: torch.dtype | None = None, group: Callable[[str], str] = layer_group) -> list[BucketLayout]:
    """The buckets of the CPU transport's plan, floating tensors cast to ``dtype``, each laid out in
    one buffer (tensors aligned, so every one can be viewed in place with its own dtype)."""
    tensors = dict(named)
    sizes = {n: t.numel() * sent_dtype(t, dtype).itemsize for n, t in tensors.items()}
    layouts = []
    for names in plan_buckets(sizes.items(), bucket_bytes, group):
        offsets, total = arena_layout([sizes[n] for n in names])
        layouts.append(BucketLayout(
            tuple(names), tuple(str(sent_dtype(tensors[n], dtype)).removeprefix("torch.") for n in names),
            tuple(tuple(tensors[n].shape) for n in names), tuple(offsets), total))
    return layouts


def bucket_views(buffer: torch.Tensor, layout: BucketLayout) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) views of a flat uint8 ``buffer`` holding ``layout``."""
    for name, dtype, shape, offset in zip(layout.names, layout.dtypes, layout.shapes, layout.offsets):
        dt = getattr(torch, dtype)
        size = dt.itemsize * int(torch.Size(shape).numel())
        yield name, buffer[offset : offset + size].view(dt).view(shape)


def _buffer(layouts: Sequence[BucketLayout], device: torch.device | str) -> torch.Tensor:
    # One buffer for the largest bucket, reused by every bucket of the sync.
    return torch.empty(max((l.nbytes for l in layouts), default=0), dtype=torch.uint8, device=device)


def broadcast_buckets(group, named: Iterable[tuple[str, torch.Tensor]], layouts: Sequence[BucketLayout],
                      device: torch.device | str) -> int:
    """Rank 0 sends ``layouts`` bucket by bucket, one broadcast each; returns the bytes sent (per
    receiver). ``device``: where the buffer lives (the parameters' GPU for NCCL, ``cpu`` for gloo)."""
    tensors = dict(named)
    buffer, sent = _buffer(layouts, device), 0
    with torch.no_grad():
        for layout in layouts:
            for name, view in bucket_views(buffer, layout):
                view.copy_(_whole(tensors[name]))  # casts to the layout's dtype and flattens in one copy
            group.broadcast(buffer[: layout.nbytes], 0).wait()
            sent += layout.nbytes
    return sent


def gather_buckets(named: Iterable[tuple[str, torch.Tensor]], layouts: Sequence[BucketLayout]) -> None:
    """A learner rank other than 0 under FSDP2: join the gather of every tensor that rank 0's
    :func:`broadcast_buckets` reads, in the same order (each gather is a collective of the ranks)."""
    tensors = dict(named)
    with torch.no_grad():
        for layout in layouts:
            for name in layout.names:
                _whole(tensors[name])


def _whole(t: torch.Tensor) -> torch.Tensor:
    """A tensor sharded across learner ranks (an FSDP2 DTensor) gathered whole; others as they are."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def receive_buckets(group, layouts: Sequence[BucketLayout], device: torch.device | str,
                    reload: Callable[[list[tuple[str, torch.Tensor]]], int]) -> int:
    """Ranks >= 1 receive ``layouts`` in order and ``reload`` each bucket as it arrives (its tensors
    are views of one buffer, overwritten by the next bucket: ``reload`` must copy them). Returns the
    sum of what ``reload`` returned."""
    buffer, loaded = _buffer(layouts, device), 0
    for layout in layouts:
        group.broadcast(buffer[: layout.nbytes], 0).wait()
        loaded += reload(list(bucket_views(buffer, layout)))
    return loaded
