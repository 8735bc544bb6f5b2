"""The Ray shells around the plain classes: what only an actor needs (object-store refs, the
weight-transport protocol). All logic stays in the plain classes, so tests use them in-process."""

from __future__ import annotations

from typing import Any

import ray
import torch

from remax_ray.learner.learner import Learner
from remax_ray.reward.scorer import RewardScorer
from remax_ray.rollout.generator import Generator
from remax_ray.sync.collective import BucketLayout, broadcast_buckets, init_group, listen_socket, plan_layouts
from remax_ray.sync.cpu import WeightBuckets


class GeneratorShell(Generator):
    def load_weight_refs(self, refs: list[ray.ObjectRef]) -> dict[str, float]:
        # One bucket at a time, each mapped from the object store without a copy (numpy arrays):
        # only one bucket beyond the model is ever resident here.
        return self.load_weights(ray.get(ref) for ref in refs)


class LearnerShell(Learner):
    """The learner's side of both weight transports: CPU buckets through the object store, or
    rank 0 of a collective group."""

    def _buckets(self, bucket_mb: int, dtype: str) -> WeightBuckets:
        # The policy's HF-named parameters as buckets of whole layers (tied weights appear once),
        # each built only when indexed, so the whole model is never staged at once.
        return WeightBuckets(self.policy.named_parameters(), bucket_mb * 2**20, getattr(torch, dtype))

    def weight_buckets(self, bucket_mb: int, dtype: str) -> int:
        """How many buckets a sync has (the plan depends only on the parameters' names and sizes)."""
        return len(self._buckets(bucket_mb, dtype))

    def export_bucket(self, index: int, bucket_mb: int, dtype: str) -> Any:
        # Returned, not ray.put: Ray stores the result in the object store itself, copying the
        # parameters' bytes once, and the caller owns it.
        return self._buckets(bucket_mb, dtype)[index]

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
        return plan_layouts(self.policy.named_parameters(), bucket_mb * 2**20, getattr(torch, dtype))

    def broadcast_weights(self, layouts: list[BucketLayout]) -> float:
        """Send the parameters over the group, one broadcast per bucket; returns bytes sent."""
        return float(broadcast_buckets(self._group, self.policy.named_parameters(), layouts, self._group_device))


class RewardShell(RewardScorer):
    pass
