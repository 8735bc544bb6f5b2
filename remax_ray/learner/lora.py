"""LoRA on the learner: a PEFT adapter on the frozen policy; the KL reference is the same model with
the adapter switched off (one copy of the base weights), and what a sync or a checkpoint moves is
the adapter alone.

The adapter's tensors keep PEFT's names (``base_model.model.<module>.lora_A.weight``): the
checkpoint is PEFT's own folder layout (``PeftModel.from_pretrained`` and ``vllm serve
--lora-modules`` read it), and vLLM's ``LoRAModel.from_lora_tensors`` parses the same names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from remax_ray.learner.parallel import full
from remax_ray.models import adapter_for

ADAPTER_CONFIG = "adapter_config.json"
MERGED_DIR = "merged"
"""A LoRA checkpoint's merged model (base + adapter, a plain HF folder), when asked for."""


@dataclass(frozen=True)
class LoraSpec:
    """``model.lora.*`` as the learner and the generators need it."""

    rank: int
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str = "all-linear"
    save_merged: bool = False

    @classmethod
    def of(cls, model_cfg: Any) -> "LoraSpec | None":
        """The spec of a ``ModelConfig``; None for full fine-tuning (``lora_rank`` 0)."""
        if not model_cfg.lora_rank:
            return None
        return cls(model_cfg.lora_rank, model_cfg.lora_alpha, model_cfg.lora_dropout,
                   model_cfg.lora_target_modules, model_cfg.lora_save_merged)


@dataclass
class AdapterUpdate:
    """What one adapter-only sync carries: the adapter's tensors (PEFT names, the generators' dtype)
    and its PEFT config as a JSON-able dict (vLLM checks rank and targets against its engine)."""

    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def read_adapter(folder: str | Path) -> AdapterUpdate:
    """A saved adapter (PEFT's folder: a LoRA checkpoint) as a sync would send it."""
    from safetensors.torch import load_file

    folder = Path(folder)
    return AdapterUpdate(load_file(folder / "adapter_model.safetensors"),
                         json.loads((folder / ADAPTER_CONFIG).read_text()))


def base_of(update: AdapterUpdate) -> str:
    """The model folder an adapter was trained on (PEFT records it in the adapter's config)."""
    return str(update.config.get("base_model_name_or_path") or "")


def target_modules(model: nn.Module, spec: LoraSpec) -> list[str]:
    """The module names the adapter goes on: ``spec.target_modules``, or with all-linear every linear
    layer of the decoder layers, as the model's architecture adapter finds them."""
    if spec.target_modules != "all-linear":
        return [name.strip() for name in spec.target_modules.split(",")]
    architectures = getattr(model.config, "architectures", None) or [type(model).__name__]
    names = adapter_for(architectures).lora_targets({n: type(m).__name__ for n, m in model.named_modules()})
    if not names:
        raise ValueError(f"model.lora.target_modules=all-linear: no linear layer found inside the decoder "
                         f"layers of {architectures}; name the modules (model.lora.target_modules=q_proj,v_proj)")
    return names


def with_lora(base: nn.Module, spec: LoraSpec, adapter_folder: str | Path | None = None) -> nn.Module:
    """``base`` (frozen) with a trainable LoRA adapter: a fresh one (B = 0, so the policy starts as
    the base), or the one saved in ``adapter_folder`` (resume). Dropout is 0 while training whatever
    the config says (the log-probs must be the sampler's; see ``state.load_without_dropout``)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_folder is not None:
        model = PeftModel.from_pretrained(base, str(adapter_folder), is_trainable=True)
    else:
        config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, bias="none",
                            target_modules=target_modules(base, spec), task_type="CAUSAL_LM")
        model = get_peft_model(base, config)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def adapter_config(policy: nn.Module) -> dict[str, Any]:
    """The active adapter's PEFT config as plain JSON (sets become sorted lists)."""
    config = policy.peft_config[policy.active_adapter].to_dict()
    return json.loads(json.dumps(config, default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v)))


def adapter_update(policy: nn.Module, dtype: torch.dtype, keep: Callable[[], bool] = lambda: True
                   ) -> AdapterUpdate | None:
    """The adapter as a sync sends it: its trainable tensors, whole (gathered from FSDP2 shards: every
    rank must call this), detached CPU copies in ``dtype``. None where ``keep()`` is false (ranks > 0)."""
    from peft.utils import get_peft_model_state_dict

    named = dict(policy.named_parameters())
    state = get_peft_model_state_dict(policy, state_dict={n: p for n, p in named.items() if p.requires_grad})
    tensors = {name: full(t).detach().to("cpu", dtype).contiguous() for name, t in state.items()}
    return AdapterUpdate(tensors, adapter_config(policy)) if keep() else None


class AdapterOff(nn.Module):
    """``scorer``'s forward with ``policy``'s adapter switched off: the reference's log-probs from the
    policy's own (frozen) base weights. ``scorer`` may be wrapped by DDP or FSDP2: the reference
    goes through the same sharded module as the policy."""

    def __init__(self, scorer: nn.Module, policy: nn.Module):
        super().__init__()
        self.scorer, self._policy = scorer, [policy]  # a list: not a second registration of the policy

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with self._policy[0].disable_adapter():
            return self.scorer(*args, **kwargs)


def save_merged(policy: nn.Module, folder: Path) -> Path:
    """The merged model (base + adapter) as a plain HF folder under ``folder/merged``; the policy
    itself keeps its adapter (merged on a copy)."""
    import copy

    merged = copy.deepcopy(policy).merge_and_unload()
    out = folder / MERGED_DIR
    merged.save_pretrained(out, safe_serialization=True)
    return out
