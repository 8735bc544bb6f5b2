"""The learner -> generators weight sync, one interface over the transports (``Trainer.sync``).

Every sync pushes the learner's current weights as the next *version*; each generator reports the
version it loaded with every response, which is how a batch sampled with other weights is caught
(``Trainer._stale``). Two implementations:
  cpu:        buckets of whole layers streamed through the learner's shared-memory arenas (one node)
              or the object store, at most two in flight, loaded by the workers' ``reload_weights``;
  collective: the same buckets broadcast over a stateless process group (nccl or gloo) to every
              vLLM worker, the group formed at the first sync and again after a generator restart;
and, for a LoRA run, the adapter alone (:class:`AdapterSync`).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

import ray

from remax_ray.cluster.actors import Actors
from remax_ray.config import Config
from remax_ray.sync.collective import group_ranks


class WeightSync(Protocol):
    version: int
    """The last version pushed (0: ``model.path``, which generators are built and restarted from)."""

    def push(self) -> dict[str, float]:
        """Push the learner's weights as version ``version + 1``; returns sync_bytes, sync_buckets."""

    def forget_peers(self) -> None:
        """A generator was restarted: whatever the transport set up with its workers is gone."""


def weight_sync(cfg: Config, actors: Actors, transport: str) -> WeightSync:
    """``transport`` as ``Trainer``'s ``resolve_transport`` gives it: cpu, nccl or gloo. A LoRA run
    (``model.lora.rank`` > 0) syncs its adapter alone, whatever the transport."""
    if cfg.model.lora_rank:
        return AdapterSync(cfg, actors)
    return CpuSync(cfg, actors) if transport == "cpu" else CollectiveSync(cfg, actors, transport)


class AdapterSync:
    """LoRA: the trainable state is the adapter (megabytes), so each sync puts it in the object store
    once and every generator adds it to its engine from memory, under the sync's version as its id
    (``Generator.load_adapter``). The base weights never move; the engines' packed GEMM buffers of
    the base are never rebuilt."""

    def __init__(self, cfg: Config, actors: Actors):
        self.cfg, self.actors, self.version = cfg, actors, 0

    def forget_peers(self) -> None:
        """Nothing to forget: a restarted generator serves the base until the next push."""

    def push(self) -> dict[str, float]:
        self.version += 1
        timeout = self.cfg.cluster.sync_timeout_s
        update = self.actors.learner.export_adapter.remote(self.actors.dtype)
        loaded = ray.get([g.load_adapter.remote(update, self.version) for g in self.actors.generators],
                         timeout=timeout)
        return {"sync_bytes": loaded[0]["sync_bytes"], "sync_buckets": 1.0}


class CpuSync:
    def __init__(self, cfg: Config, actors: Actors):
        self.cfg, self.actors, self.version = cfg, actors, 0

    def forget_peers(self) -> None:
        """Nothing to forget: every sync asks where the generators are (``_one_node``)."""

    def push(self) -> dict[str, float]:
        """A sync that outlives ``cluster.sync_timeout_s`` (a dead peer) raises instead of hanging."""
        self.version += 1
        learner, gens, timeout = self.actors.learner, self.actors.generators, self.cfg.cluster.sync_timeout_s
        deadline = time.monotonic() + timeout
        args = (self.cfg.cluster.sync_bucket_mb, self.actors.dtype)
        count = ray.get(learner.weight_buckets.remote(*args), timeout=timeout)
        # One node: the learner writes each bucket into memory the workers map; else the object store.
        export = learner.export_bucket_shared if self._one_node(timeout) else learner.export_bucket
        loading: deque[list] = deque()
        loaded: list[list[dict[str, float]]] = []
        for k in range(count):
            # The learner builds bucket k while the generators load bucket k - 1. Waiting for k - 1
            # before asking for k + 1 keeps at most two buckets in flight (in the object store, or
            # the learner's two shared arenas), never the model.
            # The ref goes in a list so that the generator, not Ray, fetches it (one at a time).
            bucket = export.remote(k, *args)
            loading.append([g.load_weight_refs.remote([bucket], self.version, k, count) for g in gens])
            if len(loading) > 1:
                loaded.append(ray.get(loading.popleft(), timeout=max(deadline - time.monotonic(), 0.0)))
        while loading:
            loaded.append(ray.get(loading.popleft(), timeout=max(deadline - time.monotonic(), 0.0)))
        return {"sync_bytes": sum(per_gen[0]["sync_bytes"] for per_gen in loaded), "sync_buckets": float(count)}

    def _one_node(self, timeout: float) -> bool:
        """Whether this sync goes through shared memory: the learner's rank 0 and every generator
        on one node (asked at every sync: Ray may restart a generator elsewhere)."""
        mode = self.cfg.cluster.sync_transport
        if mode == "objects":
            return False
        gens = self.actors.generators
        nodes = ray.get([self.actors.learner.node_id.remote(), *(g.node_id.remote() for g in gens)],
                        timeout=timeout)
        if mode == "shm" and len(set(nodes)) > 1:
            raise RuntimeError(f"cluster.sync_transport=shm needs the learner and every generator on one node; "
                               f"they are on {len(set(nodes))} nodes (use cpu: shared memory where it can, "
                               "else the object store)")
        return len(set(nodes)) == 1


class CollectiveSync:
    def __init__(self, cfg: Config, actors: Actors, backend: str):
        self.cfg, self.actors, self.backend, self.version = cfg, actors, backend, 0
        self._layouts: list | None = None

    def forget_peers(self) -> None:
        self._layouts = None  # a restarted worker is not in the old broadcast group: form it again

    def push(self) -> dict[str, float]:
        self.version += 1
        learner, gens, timeout = self.actors.learner, self.actors.generators, self.cfg.cluster.sync_timeout_s
        if self._layouts is None:  # first sync: form the group (every rank joins at once)
            # One rank per vLLM worker: a tensor-parallel engine runs several.
            offsets, world = group_ranks(ray.get([g.collective_workers.remote() for g in gens], timeout=timeout))
            host, port = ray.get(learner.collective_address.remote(), timeout=timeout)
            ray.get([learner.init_collective.remote(host, port, world, self.backend, timeout)]
                    + [g.init_collective.remote(host, port, offset, world, self.backend, timeout)
                       for g, offset in zip(gens, offsets)], timeout=2 * timeout)
            self._layouts = ray.get(learner.weight_layouts.remote(self.cfg.cluster.sync_bucket_mb,
                                                                  self.actors.dtype), timeout=timeout)
        sent, *_ = ray.get([learner.broadcast_weights.remote(self._layouts)]
                           + [g.receive_collective.remote(self._layouts, self.version) for g in gens],
                           timeout=2 * timeout)
        return {"sync_bytes": sent, "sync_buckets": float(len(self._layouts))}
