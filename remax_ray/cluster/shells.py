"""The Ray shells around the plain classes: what only an actor needs (object-store refs, the
weight-transport protocol). All logic stays in the plain classes, so tests use them in-process."""

from __future__ import annotations

from typing import Any

import ray
import torch

from remax_ray.models import adapter_for
from remax_ray.learner.learner import Learner
from remax_ray.learner.lora import AdapterUpdate, adapter_update
from remax_ray.reward.scorer import RewardScorer
from remax_ray.rollout.generator import Generator
from remax_ray.sync.collective import (
    BucketLayout,
    broadcast_buckets,
    gather_buckets,
    init_group,
    listen_socket,
    plan_layouts,
)
from remax_ray.sync.cpu import SharedArena, SharedBucket, WeightBuckets


def node_id() -> str:
    return ray.get_runtime_context().get_node_id()


class GeneratorShell(Generator):
    def node_id(self) -> str:
        return node_id()

    def load_weight_refs(self, refs: list[ray.ObjectRef], version: int | None = None, first_bucket: int = 0,
                         buckets_in_sync: int = 1) -> dict[str, float]:
        # One bucket at a time, each mapped from the object store without a copy (numpy arrays):
        # only one bucket beyond the model is ever resident here.
        return self.load_weights((ray.get(ref) for ref in refs), version, first_bucket, buckets_in_sync)


class LearnerShell(Learner):
    """One learner rank, and the learner's side of the weight transports: CPU buckets through shared
    memory (one node) or the object store, or rank 0 of a collective group.

    With ``world_size`` > 1 the constructor only keeps its arguments: the ranks first meet
    (:meth:`open_store` on rank 0, then :meth:`join` on every rank), and only then build the
    Learner, whose models are wrapped for the process group as they load."""

    def __init__(self, *args: Any, rank: int = 0, world_size: int = 1, **kwargs: Any):
        self.rank, self.world_size = rank, world_size
        if world_size == 1:
            super().__init__(*args, **kwargs)
        else:
            self._deferred = (args, kwargs)

    def open_store(self) -> tuple[str, int]:
        """Rank 0: host the ranks' rendezvous store on a port the OS picks; returns (ip, port)."""
        host = ray.util.get_node_ip_address()
        self._store = torch.distributed.TCPStore(host, 0, self.world_size, is_master=True,
                                                 wait_for_workers=False)
        return host, self._store.port

    def join(self, host: str, port: int, timeout_s: float) -> None:
        """Join the process group, then load, wrap and (on resume) restore the models."""
        from datetime import timedelta

        args, kwargs = self._deferred
        store = self._store if self.rank == 0 else torch.distributed.TCPStore(
            host, port, self.world_size, is_master=False, timeout=timedelta(seconds=timeout_s))
        Learner.__init__(self, *args, rank=self.rank, world_size=self.world_size, store=store,
                         dist_timeout_s=timeout_s, **kwargs)

    def _buckets(self, bucket_mb: int, dtype: str) -> WeightBuckets:
        # The policy's HF-named parameters as buckets of whole layers (tied weights appear once),
        # each built only when indexed, so the whole model is never staged at once.
        return WeightBuckets(self.policy.named_parameters(), bucket_mb * 2**20, getattr(torch, dtype),
                             group=self._adapter.layer_group)

    @property
    def _adapter(self):
        """The policy's architecture adapter (``remax_ray.models``): how its tensors are grouped."""
        return adapter_for(self.policy.config.architectures)

    def weight_buckets(self, bucket_mb: int, dtype: str) -> int:
        """How many buckets a sync has (the plan depends only on the parameters' names and sizes)."""
        return len(self._buckets(bucket_mb, dtype))

    def export_bucket(self, index: int, bucket_mb: int, dtype: str) -> Any:
        # Returned, not ray.put: Ray stores the result in the object store itself, copying the
        # parameters' bytes once, and the caller owns it. Under FSDP2 every rank builds the bucket
        # (each joins the gather of its tensors, one bucket of whole tensors at a time) and rank 0
        # alone ships it.
        bucket = self._buckets(bucket_mb, dtype)[index]
        return bucket if self.rank == 0 else None

    def export_bucket_shared(self, index: int, bucket_mb: int, dtype: str) -> SharedBucket | None:
        """Bucket ``index`` written into shared memory that the generators' vLLM workers on this
        node map: one copy from the parameters, nothing through the object store. Two arenas
        alternate: the driver asks for bucket k + 1 only once bucket k - 1 is loaded everywhere, so
        the workers still reading bucket k are never overwritten."""
        arenas = self.__dict__.setdefault("_sync_arenas", (SharedArena(), SharedArena()))
        return self._buckets(bucket_mb, dtype).write(index, arenas[index % 2] if self.rank == 0 else None)

    def node_id(self) -> str:
        return node_id()

    def export_adapter(self, dtype: str) -> AdapterUpdate | None:
        """LoRA: the adapter alone, whole, in the generators' ``dtype``, on rank 0 (under FSDP2
        every rank joins the gather of its shards). Returned: Ray puts it in the object store."""
        return adapter_update(self.policy, getattr(torch, dtype), keep=lambda: self.rank == 0)

    def collective_address(self) -> tuple[str, int]:
        """This node's IP and the port of the group's rendezvous store (hosted by rank 0). The port
        stays bound and listening until ``init_collective`` hands the socket to the store, so no
        other process can take it in between."""
        host = ray.util.get_node_ip_address()
        self._listen = listen_socket(host)
        return host, self._listen.getsockname()[1]

    def init_collective(self, host: str, port: int, world_size: int, backend: str,
                        timeout_s: float | None = None) -> None:
        """Host rank 0 of the weight-sync group (blocks until every generator worker joined)."""
        listen, self._listen = self._listen, None
        self._group = init_group(host, port, 0, world_size, backend, timeout_s, listen=listen)
        # gloo moves host memory; NCCL sends from the parameters' GPU.
        self._group_device = torch.device("cpu") if backend == "gloo" else self.device

    def weight_layouts(self, bucket_mb: int, dtype: str) -> list[BucketLayout]:
        """The broadcast's buckets: the CPU transport's plan, in the generators' ``dtype``."""
        return plan_layouts(self.policy.named_parameters(), bucket_mb * 2**20, getattr(torch, dtype),
                            group=self._adapter.layer_group)

    def broadcast_weights(self, layouts: list[BucketLayout]) -> float:
        """Send the parameters over the group, one broadcast per bucket; returns bytes sent. Under
        FSDP2 every learner rank calls this: rank 0 (the only one in the weight-sync group) sends,
        the others join each tensor's gather from the shards."""
        if self.rank > 0:
            gather_buckets(self.policy.named_parameters(), layouts)
            return 0.0
        return float(broadcast_buckets(self._group, self.policy.named_parameters(), layouts, self._group_device))


class RewardShell(RewardScorer):
    pass
