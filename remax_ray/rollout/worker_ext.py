"""vLLM worker extension: in-place weight reload from the generator's shared arena or from the
learner's collective broadcast (no disk).

vLLM instantiates this mixin inside each worker process (``LLM(worker_extension_cls=...)``) and we
reach it through ``llm.collective_rpc``. Calling the model's ``load_weights`` directly fails on CPU
after start-up (repacked params lose ``weight_loader``); vLLM's layer-wise reload re-runs the
loader's processing, so it works on CPU and GPU alike. On vLLM-CPU, for the architectures it knows,
``direct_reload`` skips it and packs the arena's tensors straight into the engine's GEMM buffers;
otherwise we run vLLM's reload over the bucket's own modules only (``_reload_in_scope``), and fall
back to its whole-model ``reload_weights`` when a checkpoint name is not a module path of vLLM's model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import torch

from remax_ray.models import ModelAdapter, adapter_for
from remax_ray.rollout.direct_reload import direct_reload
from remax_ray.sync.cpu import ArenaReader, ArenaSlice

# In the whole-model fallback, one reload call per bucket means every layer outside the bucket is
# "not loaded" in that call, and vLLM warns about each of them. That is expected here.
for _name in ("vllm.model_executor.model_loader.reload.layerwise",
              "vllm.model_executor.model_loader.reload.inplace"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class WeightReloadExtension:
    """Mixed into vLLM's worker class; ``self`` is the worker."""

    def remax_reload_arena(self, path: str, capacity: int, generation: str, offsets: list[int],
                           names: list[str], dtypes: list[str], shapes: list[list[int]]) -> int:
        """Reload the HF-named tensors the generator wrote into its arena (``remax_ray.sync.cpu``);
        returns the number of tensors loaded. ``generation`` is the arena's identity
        (:attr:`ArenaSlice.generation`): the worker maps each arena once and checks that ``path``
        still leads to it, which a path alone cannot tell once its owner has gone.

        A bucket must hold whole decoder layers (the exporter guarantees it): vLLM fuses q/k/v and
        gate/up, and a layer whose parts arrive in different reload calls would be processed half-new.
        The tensors are views of the arena, valid during this call only: vLLM's loaders copy them.
        """
        reader = self.__dict__.setdefault("_remax_arena", ArenaReader())
        named = reader.tensors(ArenaSlice(path, capacity, generation, offsets), names, dtypes, shapes)
        return self._remax_reload(named)

    def remax_load_adapter(self, tensors: dict[str, torch.Tensor], config: dict, adapter_id: int) -> int:
        """Add the learner's LoRA adapter (PEFT-named ``tensors``, its PEFT ``config``) to vLLM's
        adapter cache under ``adapter_id``, from memory: vLLM's own path reads an adapter folder
        from disk at its first request. Requests then name it by ``LoRARequest(..., adapter_id, ...)``,
        which finds it cached and loads nothing. Older adapters are evicted (``max_loras`` 1)."""
        from vllm.lora.lora_model import LoRAModel
        from vllm.lora.peft_helper import PEFTHelper

        from remax_ray.rollout import lora_kernels

        if getattr(self, "remax_lora_fast_path", True):
            lora_kernels.install()  # one adapter serves every token (lora_kernels.py)
        manager = self.model_runner.lora_manager
        cache = manager._adapter_manager
        helper = PEFTHelper.from_dict(config)
        helper.validate_legal(manager.lora_config)  # its rank within max_lora_rank, and the like
        mapper = getattr(cache.model, "hf_to_vllm_mapper", None)
        lora = LoRAModel.from_lora_tensors(
            lora_model_id=adapter_id, tensors=tensors, peft_helper=helper, device="cpu",
            dtype=manager.lora_config.lora_dtype, model_vocab_size=manager.vocab_size,
            weights_mapper=mapper.get_rename_mapper() if mapper is not None else None)
        for old in list(cache.list_adapters()):
            cache.remove_adapter(old)
        cache.add_adapter(lora)
        return len(tensors)

    def remax_last_reload_direct(self) -> bool:
        """Whether the last bucket took ``direct_reload`` (tests and benches check the path)."""
        return bool(getattr(self, "remax_direct", False))

    def remax_allow_direct(self, allowed: bool) -> bool:
        """Turn ``direct_reload`` off (or back on) in this worker, so that tests and benches can
        compare it with vLLM's reload on one engine."""
        self.remax_direct_allowed = bool(allowed)
        return self.remax_direct_allowed

    def remax_adapter(self) -> ModelAdapter:
        """The served model's architecture adapter (``remax_ray.models``), from its HF config."""
        return adapter_for(getattr(self.vllm_config.model_config.hf_config, "architectures", None))

    def remax_worker_rank(self) -> int:
        """This worker's rank inside its engine (0 .. tensor x pipeline parallel - 1)."""
        return int(getattr(self, "rank", 0))

    def remax_init_collective(self, host: str, port: int, rank_offset: int, world_size: int,
                              backend: str, timeout_s: float | None = None) -> bool:
        """Join the learner's weight-sync group (see ``remax_ray.sync.collective``) as rank
        ``rank_offset`` + this worker's rank in its engine."""
        from remax_ray.sync.collective import init_group

        self._remax_group = init_group(host, port, rank_offset + self.remax_worker_rank(), world_size, backend,
                                       timeout_s)
        self._remax_backend = backend
        return True

    def remax_receive_collective(self, layouts: list) -> int:
        """Receive the learner's broadcast bucket by bucket, reloading each layer group as it arrives
        (``layouts``: ``BucketLayout.as_rpc()`` of each bucket); returns the tensors loaded."""
        from remax_ray.sync.collective import BucketLayout, receive_buckets

        # gloo moves host memory; NCCL receives straight into the model's device.
        device = "cpu" if self._remax_backend == "gloo" else next(self.model_runner.get_model().parameters()).device
        return receive_buckets(self._remax_group, [BucketLayout.from_rpc(f) for f in layouts], device,
                               self._remax_reload)

    def _remax_reload(self, named: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Reload ``named`` in place; the seconds of each part go to ``self.remax_timing``."""
        named = list(named)
        model = self.model_runner.get_model()
        adapter = self.remax_adapter()
        start = time.perf_counter()
        # vLLM-CPU: straight into the engine's packed GEMM buffers, no re-materialised parameters.
        direct = getattr(self, "remax_direct_allowed", True) and adapter.direct_reload and \
            direct_reload(model, named, self.vllm_config.model_config.dtype)
        if not direct:
            module_names = {name for name, _ in model.named_modules()}
            scope = reload_scope([name for name, _ in named], module_names.__contains__, adapter)
            if scope is None:  # names that do not map onto vLLM's modules: its whole-model reload
                self.reload_weights(weights_iterator=iter(named))
            else:
                _reload_in_scope(self, model, scope, named)
        reloaded = time.perf_counter()
        embed_name, embed, head = _embedding_and_head(model)
        if embed is not None and any(adapter.to_vllm(name) == f"{embed_name}.weight" for name, _ in named):
            _retie_lm_head(model, embed, head)
        self.remax_timing = {"reload": reloaded - start, "retie": time.perf_counter() - reloaded}
        self.remax_direct = direct
        return len(named)


def reload_scope(names: Iterable[str], has_module: Callable[[str], bool],
                 adapter: ModelAdapter = adapter_for("LlamaForCausalLM")) -> list[str] | None:
    """The vLLM modules a bucket's tensors load into: each decoder layer whole (``model.layers.N``),
    else the module that owns the tensor (``model.norm`` for ``model.norm.weight``), named as vLLM's
    model names them (``adapter.to_vllm``). None when one of them is not a module of vLLM's model (a
    checkpoint whose names vLLM maps elsewhere), and on the generic path (one bucket, the whole model)."""
    scope: list[str] = []
    for name in names:
        group = adapter.layer_group(name)
        module = adapter.to_vllm(group if group != name else name.rpartition(".")[0]) if group else ""
        if not module or not has_module(module):
            return None
        if module not in scope:
            scope.append(module)
    return scope


def _reload_in_scope(worker, model: torch.nn.Module, scope: list[str], named: list) -> None:
    """vLLM's layer-wise in-place reload (``reload_weights``) restricted to the bucket's modules.

    ``reload_weights`` prepares and finalises every module of the model on each call: it moves all
    of them to the meta device and back, and re-processes every attention layer, though a bucket
    holds a few layers (measured: docs/PERFORMANCE.md). The steps are the same here, over
    ``scope`` only; the loaded parameters are checked to lie inside it, since a parameter outside
    would have been loaded without the layer-wise processing."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader.reload.layerwise import (
        finalize_layerwise_reload,
        initialize_layerwise_reload,
    )

    modules = torch.nn.ModuleList([model.get_submodule(name) for name in scope])
    with set_current_vllm_config(worker.vllm_config):
        initialize_layerwise_reload(modules)
        try:
            loaded = model.load_weights(iter(named))
        finally:
            finalize_layerwise_reload(modules, worker.vllm_config.model_config)
    inside = tuple(f"{name}." for name in scope)
    outside = sorted(n for n in (loaded or ()) if not n.startswith(inside))
    if outside:
        raise RuntimeError(f"weight reload: {outside[:3]} loaded outside the modules {scope[:3]}...; "
                           "this model needs vLLM's whole-model reload_weights")


def _embedding_and_head(model: torch.nn.Module) -> tuple[str, torch.nn.Module | None, torch.nn.Module | None]:
    """vLLM's token embedding (its module path and module) and LM head, found by module type, so
    every architecture's naming (``model.embed_tokens``, ``transformer.wte``, ``model.embed_in``) is
    covered: the first vocabulary embedding that is not an LM head, and the first LM head."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    embed_name, embed, head = "", None, None
    for name, module in model.named_modules():
        if isinstance(module, ParallelLMHead):
            head = head or module
        elif isinstance(module, VocabParallelEmbedding) and embed is None:
            embed_name, embed = name, module
    return embed_name, embed, head


def _retie_lm_head(model: torch.nn.Module, embed: torch.nn.Module, head: torch.nn.Module | None) -> None:
    """Refresh a tied LM head after its embedding was reloaded.

    With tied embeddings the checkpoint carries only the embedding. vLLM's layer-wise reload
    re-processes that layer but treats the LM head as "not loaded", and on CPU the head computes
    through a GEMM handle packed from the weight at load time, so it keeps the OLD weights even
    though the parameter is shared (measured on SmolLM2: 1.2 nats max |dlogp| after a change).
    On vLLM-CPU the embedding's own post-load processing, which this reload just ran, built a
    handle from the new shared weight: the head takes that one instead of packing the same
    vocab x hidden matrix again. Elsewhere the head's post-load processing is re-run.
    """
    config = getattr(model, "config", None)
    if not getattr(config, "tie_word_embeddings", False) or head is None or head is embed:
        return
    if head.weight.data_ptr() != embed.weight.data_ptr():
        with torch.no_grad():
            head.weight.copy_(embed.weight)
    elif callable(getattr(embed, "cpu_linear", None)) and hasattr(head, "cpu_linear"):
        head.cpu_linear = embed.cpu_linear
        return
    method = getattr(head, "quant_method", None)
    if method is not None:
        method.process_weights_after_loading(head)
