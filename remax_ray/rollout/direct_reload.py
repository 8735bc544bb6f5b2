"""Direct weight reload on vLLM-CPU: each tensor goes straight to where the engine computes with it.

vLLM's layer-wise reload (``worker_ext._reload_in_scope``) re-materialises every parameter of the
bucket's modules, copies the new tensors in through the weight loaders, then re-runs each module's
post-load processing, which on CPU packs every linear weight for oneDNN. Measured on SmolLM2-135M
(docs/PERFORMANCE.md), the packing is under half of it: the copies into the re-materialised
parameters and vLLM's bookkeeping are the rest, and the packing reads a copy of what is already in
the arena. Here, for an unsharded (single-worker) CPU engine:

- a linear layer gets the arena's tensor itself as its weight for the length of its post-load
  processing, which packs it into oneDNN's own buffer and drops the weight. A fused projection
  (q/k/v, gate/up; the model's ``packed_modules_mapping``) is one view of the arena when its parts
  lie back to back there, as the learner writes them (in the checkpoint's order), else one
  concatenation;
- an embedding (it keeps its weight for the lookup, and packs it for a tied LM head) and every
  other parameter (norms) are copied into place.

Only for models whose ``load_weights`` hands each checkpoint tensor to its loader unchanged (their
``models.ModelAdapter.direct_reload``; GPT-2's, for one, transposes some). A bucket with any tensor this cannot route
(a quantised layer, a sharded engine, a loader of its own, a name vLLM's model maps elsewhere) is
left to vLLM's reload, untouched here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

@dataclass
class _Target:
    """One parameter of one vLLM module and the checkpoint tensors that make it."""

    module: torch.nn.Module
    param: str
    kind: str
    """``linear`` (the weight of an unquantised linear layer: packed, not stored), ``embedding``
    (a vocabulary embedding's weight: stored and packed) or ``copy`` (stored as is)."""
    parts: dict[int, torch.Tensor] = field(default_factory=dict)
    """Position in the fused parameter (0 when not fused) -> tensor."""

    def tensor(self, fused_parts: int) -> torch.Tensor | None:
        if sorted(self.parts) != list(range(fused_parts)):
            return None
        return concat_rows([self.parts[i] for i in range(fused_parts)])


def concat_rows(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(parts)`` along the rows, as a view when the parts lie back to back in one storage
    (no copy: the learner writes a fused projection's parts in order into the arena)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    rows = sum(p.shape[0] for p in parts)
    contiguous = all(p.is_contiguous() and p.dtype == first.dtype and p.shape[1:] == first.shape[1:]
                     and p.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
                     for p in parts)
    expected = first.data_ptr()
    for p in parts:
        contiguous = contiguous and p.data_ptr() == expected
        expected += p.nbytes
    if not contiguous:
        return torch.cat(list(parts))
    return first.as_strided((rows, *first.shape[1:]), first.stride(), first.storage_offset())


def plan(model: torch.nn.Module, named: Sequence[tuple[str, torch.Tensor]],
         dtype: torch.dtype | None = None) -> list[_Target] | None:
    """Where each checkpoint tensor goes, or None when one of them has no direct route. ``dtype``:
    the engine's (its model config's), what a linear weight must arrive in."""
    from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import (
        UnquantizedEmbeddingMethod,
        VocabParallelEmbedding,
    )

    packed = getattr(model, "packed_modules_mapping", None) or {}
    part_of = {part: (fused, i) for fused, parts in packed.items() for i, part in enumerate(parts)}
    modules = dict(model.named_modules())
    targets: dict[tuple[str, str], _Target] = {}
    for name, tensor in named:
        path, _, param = name.rpartition(".")
        index = 0
        if path not in modules:
            parent, _, leaf = path.rpartition(".")
            if leaf not in part_of:
                return None
            fused, index = part_of[leaf]
            path = f"{parent}.{fused}" if parent else fused
        module = modules.get(path)
        if module is None or not isinstance(getattr(module, param, None), torch.Tensor):
            return None
        if getattr(module, "tp_size", 1) != 1:
            return None
        if isinstance(module, LinearBase):
            if not isinstance(module.quant_method, UnquantizedLinearMethod) or param not in ("weight", "bias"):
                return None
            kind = "linear" if param == "weight" else "copy"
        elif isinstance(module, VocabParallelEmbedding):
            if not isinstance(module.quant_method, UnquantizedEmbeddingMethod) or param != "weight":
                return None
            kind = "embedding"
        else:
            from vllm.model_executor.model_loader.weight_utils import default_weight_loader

            if getattr(getattr(module, param), "weight_loader", default_weight_loader) is not default_weight_loader:
                return None
            kind = "copy"
        target = targets.setdefault((path, param), _Target(module, param, kind))
        if index in target.parts:
            return None
        target.parts[index] = tensor
    for (path, param), target in targets.items():
        leaf = path.rpartition(".")[2]
        n_parts = len(packed.get(leaf, ())) or 1
        whole = target.tensor(n_parts)
        if whole is None or not _fits(target, whole, dtype):
            return None
        target.parts = {0: whole}
    # A linear layer's bias before its weight: the weight's processing may convert the bias.
    return sorted(targets.values(), key=lambda t: t.kind == "linear")


def _fits(target: _Target, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> bool:
    module = target.module
    if target.kind == "linear":
        # After a direct reload the packed layer keeps a placeholder weight (``torch.empty(0)``,
        # float32) whose dtype is not the engine's: compare with the layer's own parameter dtype.
        want = (module.output_size_per_partition, module.input_size_per_partition)
        engine = dtype or getattr(module, "params_dtype", None) or module.weight.dtype
        return tuple(tensor.shape) == want and tensor.dtype == engine
    current = getattr(module, target.param)
    if target.kind == "embedding":  # vLLM pads the vocabulary; the padded rows stay as they are
        return (tensor.dim() == 2 and tensor.shape[0] <= current.shape[0]
                and tensor.shape[1] == current.shape[1] and tensor.dtype == current.dtype)
    return tensor.shape == current.shape


def apply(targets: Sequence[_Target]) -> None:
    from vllm.platforms import current_platform

    for target in targets:
        module, tensor = target.module, target.parts[0]
        if target.kind == "copy":
            with torch.no_grad():
                getattr(module, target.param).copy_(tensor)
        elif target.kind == "embedding":
            with torch.no_grad():
                module.weight[: tensor.shape[0]].copy_(tensor)
            module.quant_method.process_weights_after_loading(module)
        else:
            # zentorch may compute from the weight it is given rather than a packed copy: give it
            # memory of its own, not the arena's (rewritten by the next sync).
            weight = tensor.clone() if current_platform.is_zen_cpu() else tensor
            module.weight = torch.nn.Parameter(weight, requires_grad=False)
            module.quant_method.process_weights_after_loading(module)
            if module.weight.numel() and module.weight.data_ptr() == tensor.data_ptr():
                # The dispatch kept the weight to compute with (torch's own linear): same reason.
                module.weight = torch.nn.Parameter(tensor.clone(), requires_grad=False)


def direct_reload(model: torch.nn.Module, named: Sequence[tuple[str, torch.Tensor]],
                  dtype: torch.dtype | None = None) -> bool:
    """Load ``named`` into ``model`` directly (see the module's docstring); False, with nothing
    touched, when the engine is not a CPU one or a tensor has no direct route. The caller checks
    that the architecture allows it (``ModelAdapter.direct_reload``); ``dtype``: the engine's."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    targets = plan(model, named, dtype)
    if targets is None:
        return False
    apply(targets)
    return True
