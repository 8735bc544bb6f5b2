"""CPU transport: the learner's weights as raw tensor bytes through the Ray object store, one bucket
at a time, with no disk and no serialisation format in between.

- Buckets never split a decoder layer: vLLM fuses q/k/v and gate/up into one parameter and reloads
  layer by layer, so every tensor of ``model.layers.N`` must arrive in the same reload call.
- The learner builds bucket k only when the driver asks for it (:class:`WeightBuckets`), as numpy
  views of its parameters (cast to the generators' dtype when it differs). Ray copies those views
  into the object store once (pickle5 out-of-band buffers), and ``ray.get`` in the generator maps
  them back without a copy. The safetensors blobs this replaces cost a ``save`` (two copies), a
  ``bytes`` pickled in-band by Ray and a second ``load``.
- **One node** (the learner's rank 0 and every generator): the learner writes the bucket straight
  into a :class:`SharedArena` of its own, a memfd that vLLM's worker maps (:meth:`WeightBuckets.write`,
  one copy, the cast to the generators' dtype included), and only names, dtypes, shapes and offsets
  travel. Two arenas alternate, so the learner writes bucket k + 1 while the workers read bucket k.
- **Across nodes** the generator copies the bucket it got from the object store into an arena of its
  own, and sends the worker the same small description. Sending the bytes themselves
  through ``collective_rpc`` crosses two processes (engine core, then worker) by msgpack and costs
  more than the reload (docs/PERFORMANCE.md). The arena is kept between syncs, so its pages are
  faulted in once rather than on every sync.
- A worker outlives learners (``remax-ray repro``), and a new learner may get a dead one's PID and fd
  number, so the path an arena is opened by does not tell arenas apart: each memfd gets an identity
  that no other arena has (its inode and a random id), the worker checks that the file it opens is
  that one, and drops the mappings of arenas whose path no longer leads to them.
"""

from __future__ import annotations

import mmap
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from remax_ray.models import adapter_for

_LLAMA_LAYOUT = adapter_for("LlamaForCausalLM")
ALIGN = 64
"""Byte alignment of every tensor in the arena: a multiple of any dtype's size (and a cache line),
so each tensor can be viewed in place with its own dtype."""
MAX_MAPPED = 4
"""Arenas a worker keeps mapped at most: the learner's two (one node) or its generator's one (across
nodes), and room for a new learner's while the last one's are still there."""


def layer_group(name: str) -> str:
    """The reload unit of a Llama-family parameter (``model.layers.N``): its decoder layer, or the
    tensor itself. Other layouts: their ``models.ModelAdapter.layer_group``."""
    return _LLAMA_LAYOUT.layer_group(name)


def plan_buckets(sizes: Iterable[tuple[str, int]], bucket_bytes: int,
                 group: Callable[[str], str] = layer_group) -> list[list[str]]:
    """Names per bucket: whole reload units (``group``: the model's adapter's ``layer_group``), in
    model order, about ``bucket_bytes`` each (a unit larger than the bound gets a bucket of its own).
    ``sizes``: (name, bytes as sent)."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for name, size in sizes:
        groups.setdefault(group(name), []).append((name, size))
    buckets: list[list[str]] = []
    current: list[str] = []
    used = 0
    for group in groups.values():
        group_bytes = sum(size for _, size in group)
        if current and used + group_bytes > bucket_bytes:
            buckets.append(current)
            current, used = [], 0
        current += [name for name, _ in group]
        used += group_bytes
    if current:
        buckets.append(current)
    return buckets


@dataclass
class Bucket:
    """Tensors as raw bytes: ``arrays[i]`` is a flat uint8 array holding tensor ``names[i]``."""

    names: list[str]
    dtypes: list[str]
    shapes: list[tuple[int, ...]]
    arrays: list[np.ndarray]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


class WeightBuckets(Sequence):
    """A model's weights as buckets, planned at construction and built one at a time on demand."""

    def __init__(self, named: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int,
                 dtype: torch.dtype | None = None, group: Callable[[str], str] = layer_group):
        self._tensors = dict(named)
        self._dtype = dtype
        sizes = [(n, t.numel() * sent_dtype(t, dtype).itemsize) for n, t in self._tensors.items()]
        self._plan = plan_buckets(sizes, bucket_bytes, group)

    def __len__(self) -> int:
        return len(self._plan)

    def __getitem__(self, index: int) -> Bucket:  # type: ignore[override]
        names = self._plan[index]
        tensors = [_cpu(self._tensors[n], self._dtype) for n in names]
        return Bucket(names, [str(t.dtype).removeprefix("torch.") for t in tensors],
                      [tuple(t.shape) for t in tensors], [_raw(t) for t in tensors])

    def write(self, index: int, arena: SharedArena | None) -> SharedBucket | None:
        """Bucket ``index`` written straight into ``arena``: each tensor is cast and copied in one
        pass from the parameter (on any device) into the shared pages. ``arena`` None: a rank that
        only joins the gathers of sharded (FSDP2) tensors, in the same order as rank 0."""
        names = self._plan[index]
        if arena is None:
            for n in names:
                _whole(self._tensors[n])
            return None
        dtypes = [sent_dtype(self._tensors[n], self._dtype) for n in names]
        shapes = [tuple(self._tensors[n].shape) for n in names]
        sizes = [int(np.prod(s, dtype=np.int64)) * d.itemsize for s, d in zip(shapes, dtypes)]
        where, dest = arena.reserve(sizes)
        for n, d, shape, off, size in zip(names, dtypes, shapes, where.offsets, sizes):
            with torch.no_grad():
                dest[off : off + size].view(d).view(shape).copy_(_whole(self._tensors[n]))
        return SharedBucket(where, names, [str(d).removeprefix("torch.") for d in dtypes], shapes)


def sent_dtype(t: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    return dtype if dtype is not None and t.is_floating_point() else t.dtype


def _whole(t: torch.Tensor) -> torch.Tensor:
    if hasattr(t, "full_tensor"):  # sharded across learner ranks (FSDP2): gathered whole, by all ranks
        t = t.full_tensor()
    return t.detach()


def _cpu(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    t = _whole(t)
    if dtype is not None and t.is_floating_point():
        t = t.to(dtype)  # a no-op (no copy) when the dtype already matches
    return t.to("cpu").contiguous()


def _raw(t: torch.Tensor) -> np.ndarray:
    """The tensor's bytes as a flat uint8 numpy view (numpy has no bfloat16; bytes travel as is)."""
    return t.reshape(-1).view(torch.uint8).numpy()


def arena_layout(sizes: Sequence[int], align: int = ALIGN) -> tuple[list[int], int]:
    """Offsets of consecutive tensors of ``sizes`` bytes, each aligned to ``align``, and the total."""
    offsets, end = [], 0
    for size in sizes:
        start = -(-end // align) * align
        offsets.append(start)
        end = start + size
    return offsets, end


@dataclass(frozen=True)
class ArenaSlice:
    """Where a bucket lies in the arena, as the worker needs it (plain values: sent by msgpack)."""

    path: str
    """``/proc/<pid>/fd/<fd>`` of the memfd: the worker opens it to map the same pages."""
    capacity: int
    generation: str
    """The memfd's identity, new each time the arena is (re-)created: ``<st_dev>:<st_ino>:<random>``.
    The path can lead to another arena later (re-created, or a new owner with the same PID and fd),
    so the worker keys its mappings by this and checks the file it opens against it."""
    offsets: list[int]


@dataclass
class SharedBucket:
    """A bucket already in shared memory: where it lies, and what each tensor is."""

    where: ArenaSlice
    names: list[str]
    dtypes: list[str]
    shapes: list[tuple[int, ...]]

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(s, dtype=np.int64)) * getattr(torch, d).itemsize
                   for d, s in zip(self.dtypes, self.shapes))


class SharedArena:
    """A memfd-backed buffer, grown to the largest bucket and reused across syncs.

    A memfd rather than a /dev/shm file: it needs no name, is freed with its last mapping, and is not
    bounded by /dev/shm's size (64 MiB by default in Docker)."""

    def __init__(self) -> None:
        self._fd = -1
        self._map: mmap.mmap | None = None
        self.capacity = 0
        self.generation = ""

    def write(self, arrays: Sequence[np.ndarray]) -> ArenaSlice:
        where, dest = self.reserve([a.nbytes for a in arrays])
        dest = dest.numpy()  # the same pages; numpy takes the (read-only) object-store arrays as they are
        for a, off in zip(arrays, where.offsets):
            dest[off : off + a.nbytes] = a
        return where

    def reserve(self, sizes: Sequence[int]) -> tuple[ArenaSlice, torch.Tensor]:
        """Room for tensors of ``sizes`` bytes: where they will lie, and the arena as a uint8 tensor
        to write them into (valid until the next ``reserve``)."""
        offsets, total = arena_layout(sizes)
        self._reserve(total)
        dest = (torch.frombuffer(self._map, dtype=torch.uint8, count=total) if total
                else torch.empty(0, dtype=torch.uint8))
        return ArenaSlice(f"/proc/{os.getpid()}/fd/{self._fd}", self.capacity, self.generation, offsets), dest

    def _reserve(self, nbytes: int) -> None:
        if nbytes <= self.capacity:
            return
        self.close()
        self.capacity = -(-max(nbytes, 1) // 2**20) * 2**20  # whole MiB
        self._fd = os.memfd_create("remax-weights")
        os.ftruncate(self._fd, self.capacity)
        self._map = mmap.mmap(self._fd, self.capacity)
        # Neither a counter (it restarts with each learner process) nor the inode alone (freed inode
        # numbers are reused): a worker would keep serving the old file's mapping.
        st = os.fstat(self._fd)
        self.generation = f"{_file_id(st)}{secrets.token_hex(16)}"

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view of it is still alive: the mapping goes with its last view
                pass
            os.close(self._fd)
        self._map, self._fd, self.capacity = None, -1, 0


def _file_id(st: os.stat_result) -> str:
    """The prefix of an arena's identity (:attr:`ArenaSlice.generation`) that names its file."""
    return f"{st.st_dev}:{st.st_ino}:"


@dataclass
class _Mapping:
    path: str
    map: mmap.mmap


class ArenaReader:
    """The worker's side: maps each arena it is sent (once per identity; the learner alternates two)
    and views tensors in it. A mapping goes when its path no longer leads to its arena (the owner
    exited or re-created it), checked whenever an arena is mapped, and the least recently used one
    goes beyond :data:`MAX_MAPPED`."""

    def __init__(self) -> None:
        self._maps: dict[str, _Mapping] = {}
        """By identity, least recently used first."""

    def tensors(self, where: ArenaSlice, names: Sequence[str], dtypes: Sequence[str],
                shapes: Sequence[Sequence[int]]) -> list[tuple[str, torch.Tensor]]:
        """(name, tensor) views of the arena: valid until its owner writes the next bucket there."""
        mapping = self._maps.pop(where.generation, None) or self._map(where)
        self._maps[where.generation] = mapping
        # One buffer over the whole arena, every tensor a view of it: tensors written back to back
        # (a fused projection's parts) then share a storage, and direct_reload fuses them without a copy.
        arena = torch.frombuffer(mapping.map, dtype=torch.uint8)
        tensors = []
        for offset, dtype, shape in zip(where.offsets, dtypes, shapes):
            dtype = getattr(torch, dtype)
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            tensors.append(arena[offset : offset + size].view(dtype).view(tuple(shape)))
        return list(zip(names, tensors))

    def _map(self, where: ArenaSlice) -> _Mapping:
        self._drop_gone()
        while len(self._maps) >= MAX_MAPPED:
            self._drop(next(iter(self._maps)))
        try:
            fd = os.open(where.path, os.O_RDWR)
        except FileNotFoundError:
            fd = -1
        try:
            if fd < 0 or not where.generation.startswith(_file_id(os.fstat(fd))):
                raise RuntimeError(f"{where.path} no longer leads to arena {where.generation}: its owner "
                                   "exited or re-created it after sending this bucket")
            return _Mapping(where.path, mmap.mmap(fd, where.capacity))
        finally:
            if fd >= 0:
                os.close(fd)

    def _drop_gone(self) -> None:
        for identity, mapping in list(self._maps.items()):
            try:
                here = os.stat(mapping.path)
            except OSError:  # the owner exited, or closed the arena and nothing took its fd number
                self._drop(identity)
                continue
            if not identity.startswith(_file_id(here)):
                self._drop(identity)

    def _drop(self, identity: str) -> None:
        old = self._maps.pop(identity)
        try:
            old.map.close()
        except BufferError:  # a caller still holds a view: the mapping goes with its last view
            pass

    def close(self) -> None:
        for identity in list(self._maps):
            self._drop(identity)
