"""What the learner's models cost in memory: exact tensor bytes and the process's peak.

The paper's memory claim (ReMax needs no value model: ~50% of PPO's GPU memory) is about the
training state. ``learner_state_bytes`` counts it exactly: every parameter of every model the learner
holds, a gradient for each trainable one (they all exist at once during the backward pass), and the
optimizers' state. The peak RSS / peak CUDA allocation adds activations and the runtime.
"""

from __future__ import annotations

import resource
import sys

import torch


def _tensor_bytes(t: torch.Tensor) -> int:
    """Bytes this process holds: a sharded (FSDP2 DTensor) tensor's local shard, not its global size."""
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.numel() * t.element_size()


def state_bytes(models: list[torch.nn.Module], optimizers: list[torch.optim.Optimizer]) -> int:
    """Parameters (tied ones once) + one gradient per trainable parameter + optimizer state tensors."""
    seen: set[int] = set()
    total = 0
    for model in models:
        for p in model.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += _tensor_bytes(p) * (2 if p.requires_grad else 1)
    for opt in optimizers:
        for state in opt.state.values():
            total += sum(_tensor_bytes(v) for v in state.values() if torch.is_tensor(v))
    return total


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def memory_stats(models: list[torch.nn.Module], optimizers: list[torch.optim.Optimizer],
                 device: torch.device) -> dict[str, float]:
    out = {"learner_state_bytes": float(state_bytes(models, optimizers)),
           "learner_peak_rss_bytes": float(peak_rss_bytes())}
    if device.type == "cuda":
        out["learner_cuda_peak_bytes"] = float(torch.cuda.max_memory_allocated(device))
    return out
