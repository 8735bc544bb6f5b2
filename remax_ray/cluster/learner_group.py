"""The driver's handle on K learner ranks: the methods the trainer calls on one learner actor, with
the same names and ``.remote`` calls, fanned out to the ranks and gathered into one result, so the
trainer, repro and the failure handling never branch on K.

Each rank is a :class:`~remax_ray.cluster.shells.LearnerShell` in its own placement bundle. With K > 1
they are created first, then join one torch process group through a TCPStore that rank 0 hosts on
a port the OS picks (no bind-then-close race), then load and wrap their models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray


@ray.remote(num_cpus=0)
def _first(*results: Any) -> Any:
    """Rank 0's result once every rank has returned. Ray resolves the arguments first, so a failed or
    dead rank fails this task with that rank's own error."""
    return results[0]


class _Method:
    def __init__(self, call: Callable[..., Any]):
        self._call = call

    def remote(self, *args: Any, **kwargs: Any) -> ray.ObjectRef:
        return self._call(*args, **kwargs)


class LearnerGroup:
    """K learner actors (rank 0 first) behind the one-actor interface."""

    def __init__(self, ranks: list[Any], strategy: str, joining: list[ray.ObjectRef] | None = None):
        self.ranks = ranks
        self.strategy = strategy
        self._joining = joining or []
        """The ranks' pending ``join`` calls: ready means joined (their errors surface there)."""

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    def owns(self, actor_id_hex: str | None) -> bool:
        """Whether an error's actor is one of the ranks."""
        return actor_id_hex is not None and any(a._actor_id.hex() == actor_id_hex for a in self.ranks)

    def _all(self, name: str, per_rank: Callable[[int], tuple] | None = None, *args: Any, **kwargs: Any):
        refs = [getattr(a, name).remote(*(per_rank(r) if per_rank else args), **kwargs)
                for r, a in enumerate(self.ranks)]
        return refs[0] if len(refs) == 1 else _first.remote(*refs)

    def _gathering(self) -> bool:
        """FSDP2: reading whole weights is a collective every rank must join."""
        return self.world_size > 1 and self.strategy == "fsdp"

    def _rank0_or_all(self, name: str, *args: Any) -> ray.ObjectRef:
        if not self._gathering():
            return getattr(self.ranks[0], name).remote(*args)
        refs = [getattr(a, name).remote(*args) for a in self.ranks]
        return refs[0]  # the payload is rank 0's alone; not copied through a gathering task

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("__") and name not in ("__ray_ready__", "__ray_call__"):
            raise AttributeError(name)
        if name == "__ray_ready__" and self._joining:
            return _Method(lambda: _first.remote(*self._joining))
        if name == "train_step":
            return _Method(self._train_step)
        if name in ("export_bucket", "export_bucket_shared", "broadcast_weights"):
            return _Method(lambda *a: self._rank0_or_all(name, *a))
        if name in ("weight_buckets", "collective_address", "init_collective", "weight_layouts", "node_id"):
            return _Method(lambda *a, **k: getattr(self.ranks[0], name).remote(*a, **k))
        return _Method(lambda *a, **k: self._all(name, None, *a, **k))  # save, __ray_ready__, ...

    def _train_step(self, rollouts: list) -> ray.ObjectRef:
        from remax_ray.learner.shard import shard_rollouts

        shards = shard_rollouts(rollouts, self.world_size)
        return self._all("train_step", lambda r: shards[r])

    def kill(self) -> None:
        for a in self.ranks:
            ray.kill(a, no_restart=True)
