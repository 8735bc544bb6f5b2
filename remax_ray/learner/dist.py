"""The learner ranks' process group: joining it, and the few collectives the update needs.

With one rank (``learner.num_workers=1``) there is no process group and every helper here is the
identity, so the single learner runs exactly the code it ran before ranks existed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

import torch
import torch.distributed as dist

from remax_ray.algo import Moments, merge_all


def join(store: dist.Store, rank: int, world_size: int, device: torch.device, timeout_s: float,
         cpu_tensors: bool = False) -> None:
    """Join the ranks' default process group through ``store`` (rank 0 hosts it).

    ``timeout_s`` bounds every collective: a rank that died leaves the others waiting in one, and
    without the bound gloo would wait 30 minutes before the step fails. ``cpu_tensors``: a CUDA
    learner whose collectives also see CPU tensors (FSDP2's CPU offload gathers its shards in CPU
    memory) gets gloo beside nccl, since nccl takes only CUDA tensors."""
    dist.init_process_group(backend_for(device, cpu_tensors), store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))


def backend_for(device: torch.device, cpu_tensors: bool = False) -> str:
    if device.type != "cuda":
        return "gloo"
    return "cpu:gloo,cuda:nccl" if cpu_tensors else "nccl"


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def sum_floats(values: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Each value summed over the ranks (one all-reduce for the whole dict, in float64 so counts
    and sums of many tokens stay exact)."""
    if not active():
        return dict(values)
    keys = all_keys(list(values))  # a key only some ranks produced (e.g. importance weights) counts 0 elsewhere
    t = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def all_keys(keys: list[str]) -> list[str]:
    """The union of every rank's keys, sorted: a rank with no prompts this step has no statistics
    of its own, and each all-reduce needs the same tensor on every rank."""
    if not active():
        return sorted(keys)
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(keys))
    return sorted({k for ks in gathered for k in ks})


def all_lists(items: list) -> list[list]:
    """Every rank's ``items`` (picklable), in rank order; ``[items]`` for one rank."""
    if not active():
        return [items]
    gathered: list[list | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(items))
    return [g or [] for g in gathered]


def max_int(value: int, device: torch.device) -> int:
    return int(max_float(value, device))


def max_float(value: float, device: torch.device) -> float:
    if not active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_moments(local: Moments, device: torch.device) -> Moments:
    """Every rank's (count, mean, M2) merged (see ``algo.moments``): one all-gather of three numbers."""
    if not active():
        return local
    mine = torch.tensor([local.count, local.mean, local.m2], dtype=torch.float64, device=device)
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine)
    return merge_all(Moments(*p.tolist()) for p in parts)


def agree(check: Callable[[], None]) -> None:
    """Run ``check`` on every rank; if it raised on any rank, raise on every rank, with the first
    failing rank's error. A check that fails on one rank only would otherwise leave the others
    waiting in the next collective until the process group's timeout (minutes), which then reports
    a timeout instead of the error. Costs one small all-gather."""
    error: BaseException | None = None
    try:
        check()
    except Exception as err:  # noqa: BLE001 - every rank must reach the all-gather below
        error = err
    if not active():
        if error is not None:
            raise error
        return
    messages: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(messages, None if error is None else f"{type(error).__name__}: {error}")
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if not failed:
        return
    if error is not None:
        raise error
    rank, message = failed[0]
    raise ValueError(f"learner rank {rank} refused this step's batch: {message}")


def barrier() -> None:
    if active():
        dist.barrier()


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
