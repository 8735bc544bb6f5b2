"""One adapter per architecture family: how a model's tensors are grouped, named and reloaded.

The weight sync moves the learner's HF-named tensors into vLLM's modules. What that needs to know
of a model:
- **decoder layers** (``layer_pattern``, on the HF names): a layer's tensors travel in one bucket and
  are reloaded together, since vLLM fuses q/k/v and gate/up and processes a layer after loading it
  whole; FSDP2 shards the learner per layer too;
- **where vLLM keeps a tensor** (``vllm_prefixes``): vLLM's model may name modules otherwise than the
  checkpoint (GPT-NeoX: ``gpt_neox.layers.N`` is vLLM's ``model.layers.N``); the reload of a bucket
  is restricted to the vLLM modules its tensors land in;
- **whether the direct reload may run** (``direct_reload``): only where vLLM's ``load_weights`` hands
  each checkpoint tensor to its module unchanged (GPT-2's transposes its Conv1D weights; Phi-3's
  checkpoint is fused already; Gemma's norms are stored as w - 1).
The embedding and LM head are found on vLLM's side by module type (``rollout/worker_ext.py``), so no
family needs their names.

An architecture outside :data:`ADAPTERS` gets :data:`GENERIC`: the whole model in one bucket and
vLLM's own whole-model reload, which is correct for any model vLLM serves (its ``load_weights`` maps
every name), and slower. The run's start-up line says which path a model takes (``describe_path``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelAdapter:
    architecture: str
    """The HF class (``config.architectures[0]``); "" for the generic path."""
    layer_pattern: str = r"^(.*?layers\.\d+)\."
    """Matches the HF names of one decoder layer's tensors; group 1 is the layer's module path."""
    vllm_prefixes: tuple[tuple[str, str], ...] = ()
    """(HF prefix, vLLM prefix) pairs where vLLM names a module otherwise than the checkpoint."""
    direct_reload: bool = False
    """vLLM-CPU: reload straight into the engine's packed buffers (``rollout/direct_reload.py``)."""
    whole_model: bool = False
    """Sync the whole model in one bucket through vLLM's whole-model reload: for a model whose
    layer-by-layer reload does not serve the new weights (measured: GPT-2) and for the generic path."""
    notes: str = ""
    _layer: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_layer", re.compile(self.layer_pattern))

    @property
    def known(self) -> bool:
        return bool(self.architecture)

    def layer_group(self, name: str) -> str:
        """The reload unit of the HF tensor ``name``: its decoder layer, else the tensor itself; on
        the generic path one unit, the whole model."""
        if self.whole_model or not self.known:
            return ""
        m = self._layer.match(name)
        return m.group(1) if m else name

    def is_decoder_layer(self, module_name: str) -> bool:
        """Whether ``module_name`` (a module path in the HF model) is one whole decoder layer."""
        m = self._layer.match(module_name + ".")
        return bool(m) and m.group(1) == module_name

    def lora_targets(self, module_names: dict[str, str]) -> list[str]:
        """The module names (last path component) PEFT's LoRA targets by default: every linear
        layer inside a decoder layer (``module_names``: module path -> class name, as
        ``named_modules`` gives them). The embedding and LM head stay frozen (vLLM serves LoRA on
        the decoder's linear layers). [] when the model has no such layer under this layout."""
        linear = ("Linear", "Conv1D")
        return sorted({path.rpartition(".")[2] for path, cls in module_names.items()
                       if cls in linear and self._layer.match(path)})

    def to_vllm(self, name: str) -> str:
        """``name`` (HF) as vLLM's model names it."""
        for hf, vllm in self.vllm_prefixes:
            if name.startswith(hf):
                return vllm + name[len(hf):]
        return name


def _family(names: str, direct: bool = False, notes: str = "", **kw) -> dict[str, ModelAdapter]:
    return {arch: ModelAdapter(arch, direct_reload=direct, notes=notes, **kw) for arch in names.split()}


ADAPTERS: dict[str, ModelAdapter] = {
    **_family("LlamaForCausalLM MistralForCausalLM Qwen2ForCausalLM Qwen3ForCausalLM", direct=True),
    **_family("Phi3ForCausalLM", notes="q/k/v and gate/up fused in the checkpoint: vLLM's reload"),
    **_family("Gemma2ForCausalLM Gemma3ForCausalLM", notes="norms stored as w - 1: vLLM's reload"),
    **_family("Olmo2ForCausalLM GraniteForCausalLM", notes="vLLM's reload"),
    **_family("GPT2LMHeadModel", layer_pattern=r"^(transformer\.h\.\d+)\.", whole_model=True,
              notes="Conv1D weights transposed by vLLM's loader; one bucket, vLLM's whole-model reload"),
    **_family("GPTNeoXForCausalLM", layer_pattern=r"^(gpt_neox\.layers\.\d+)\.", whole_model=True,
              vllm_prefixes=(("gpt_neox.", "model."), ("embed_out.", "lm_head.")),
              notes="its layer-by-layer reload served wrong weights (measured): one bucket, vLLM's whole-model reload"),
}

GENERIC = ModelAdapter("", whole_model=True)


SYNC_NOISE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 2e-2}
"""Mean |learner - engine| log-prob per token above which a sync did not deliver the weights. Measured
on the tiny matrix models: float32 engines serve within 1e-5, bfloat16 ones within ~1e-2; a sync that
missed the tied LM head (GPT-2 before its adapter) showed 0.011-0.019 in float32."""


def architectures_of(model_path: str | Path) -> list[str]:
    """``architectures`` of an HF folder's config.json ([] when it names none)."""
    config = json.loads((Path(model_path) / "config.json").read_text())
    return list(config.get("architectures") or [])


def adapter_for(architectures: str | list[str] | None) -> ModelAdapter:
    """The adapter of a model's ``config.architectures`` (or one class name); GENERIC if unknown."""
    names = [architectures] if isinstance(architectures, str) else list(architectures or [])
    return next((ADAPTERS[n] for n in names if n in ADAPTERS), GENERIC)


def describe_path(architectures: str | list[str] | None, dtype: str = "", lora_rank: int = 0) -> str:
    """The start-up line: which sync path a model takes."""
    adapter = adapter_for(architectures)
    names = architectures if isinstance(architectures, str) else ", ".join(architectures or ["?"])
    if lora_rank:
        return (f"model architecture {names}: LoRA rank {lora_rank}, each weight sync sends the adapter alone "
                "(the engines keep the base weights and add the adapter from memory)")
    if not adapter.known:
        return (f"model architecture {names}: not in the tested matrix (README 'Models'); weight sync "
                "takes the generic path (the whole model in one bucket, vLLM's whole-model reload) and "
                "the first step after a sync checks that the engine serves the learner's weights")
    if adapter.whole_model:
        return f"model architecture {names}: weight sync of the whole model in one bucket, vLLM's whole-model reload"
    how = "direct reload on vLLM-CPU, else vLLM's layer-wise reload" if adapter.direct_reload \
        else "vLLM's layer-wise reload"
    return f"model architecture {names}: weight sync by decoder layer, {how}"
