"""The learner ranks' process group: joining it, and the few collectives the update needs.

With one rank (``learner.num_workers=1``) there is no process group and every helper here is the
identity, so the single learner runs exactly the code it ran before ranks existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import torch
import torch.distributed as dist


def join(store: dist.Store, rank: int, world_size: int, device: torch.device, timeout_s: float) -> None:
    """Join the ranks' default process group through ``store`` (rank 0 hosts it).

    ``timeout_s`` bounds every collective: a rank that died leaves the others waiting in one, and
    without the bound gloo would wait 30 minutes before the step fails."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))


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


def max_int(value: int, device: torch.device) -> int:
    return int(max_float(value, device))


def max_float(value: float, device: torch.device) -> float:
    if not active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier() -> None:
    if active():
        dist.barrier()


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
