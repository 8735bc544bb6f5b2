"""How K learner ranks share a model: DDP (whole replicas, gradients all-reduced) or FSDP2
(parameters, gradients and optimizer state sharded per decoder layer).

What is wrapped is the module whose ``forward`` the update calls (a
:class:`~remax_ray.learner.response_logp.ResponseLogits` around the HF model), so DDP's reducer and
FSDP2's root unshard both run. The HF model inside keeps its parameter names, which the weight
export, the HF checkpoint and the optimizer's state dict use.
"""

from __future__ import annotations

import torch
from torch import nn

from remax_ray.models import adapter_for


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks: the decoder layers its architecture adapter names (the same
    units the weight sync buckets by), else the classes transformers lists as never to be split
    across devices (``_no_split_modules``: ``LlamaDecoderLayer`` and the like)."""
    adapter = adapter_for(getattr(getattr(model, "config", None), "architectures", None))
    layers = [m for name, m in model.named_modules() if adapter.known and adapter.is_decoder_layer(name)]
    if layers:
        return layers
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__} names no decoder-layer class (_no_split_modules): "
                         "learner.strategy=fsdp cannot shard it per layer; use learner.strategy=ddp")
    return layers


def wrap(module: nn.Module, model: nn.Module, strategy: str, device: torch.device, *,
         trainable: bool, offload: bool = False) -> nn.Module:
    """``module`` (whose parameters are ``model``'s) made ready for the ranks' process group.

    DDP wraps only what trains: a frozen replica (the reference) needs no gradient hooks. FSDP2
    shards trainable and frozen models alike, each decoder layer its own unit (one layer's full
    parameters are gathered at a time), the rest (embeddings, final norm, head) in the root's."""
    if strategy == "ddp":
        if not trainable:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    if offload and device.type != "cuda":  # config.check_for_device says so before any actor starts
        raise ValueError("learner.fsdp_offload needs a CUDA learner: on the CPU the shards are in CPU memory already")
    # The ranks' group has gloo beside nccl for the offloaded (CPU) shards: see dist.join.
    kwargs = {"offload_policy": CPUOffloadPolicy()} if offload else {}
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    # The root keeps its gathered weights after a forward by default, for the backward that follows;
    # a frozen model has no backward, so it would hold its embeddings and head whole until its next
    # forward. Resharding at once keeps it at its shard.
    fully_shard(module, **({"reshard_after_forward": True} if not trainable else {}), **kwargs)
    return module


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a sharded (DTensor) one, gathered from every rank (a collective: every
    rank must call it, in the same order); a plain tensor as it is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (what its memory holds); a plain tensor as it is."""
    return t.to_local() if hasattr(t, "to_local") else t
