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


# Bytes per parameter of the learner's training state (fp32 master weights everywhere):
_TRAINED = 4 + 4 + 8  # weight + gradient + AdamW's two moments
_FROZEN = 4  # the reference: weights only


def modelled_state_bytes(policy_params: int, *, ranks: int = 1, strategy: str = "ddp",
                         critic_params: int = 0, lora_params: int = 0) -> float:
    """Training-state bytes one learner rank holds: the policy (trained), the frozen reference (the
    same size) and, for PPO, the critic (trained; its backbone's parameters plus a scalar head).

    DDP keeps a whole replica on every rank; FSDP2 shards all of it evenly over ``ranks`` (each
    decoder layer's whole weights exist only transiently, while that layer runs, so they are left
    out, as are activations). Per parameter: 16 bytes trained (fp32 weight, gradient, AdamW m and
    v), 4 frozen. ReMax: 20 N; PPO: 20 N + 16 N_critic. With a LoRA adapter of ``lora_params``
    (``model.lora.rank``) the base is held once, frozen, and is also the reference (adapter off):
    4 N + 16 N_lora."""
    if lora_params:
        total = _FROZEN * policy_params + _TRAINED * lora_params + _TRAINED * critic_params
    else:
        total = _TRAINED * policy_params + _FROZEN * policy_params + _TRAINED * critic_params
    return total / ranks if strategy == "fsdp" else float(total)


def largest_policy(device_bytes: float, *, ranks: int, strategy: str, with_critic: bool) -> float:
    """The most policy parameters whose modelled state fits ``device_bytes`` per rank (the critic,
    when there is one, the policy's size)."""
    per_param = modelled_state_bytes(1, ranks=ranks, strategy=strategy, critic_params=1 if with_critic else 0)
    return device_bytes / per_param
