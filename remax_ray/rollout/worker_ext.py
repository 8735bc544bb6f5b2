"""vLLM worker extension: in-place weight reload from safetensors bytes (no disk).

vLLM instantiates this mixin inside each worker process (``LLM(worker_extension_cls=...)``) and we
reach it through ``llm.collective_rpc``. Calling the model's ``load_weights`` directly fails on CPU
after start-up (repacked params lose ``weight_loader``); ``reload_weights`` re-runs the loader's
layer-wise processing, so it works on CPU and GPU alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from safetensors.torch import load as load_safetensors


def _tensors(buckets: list[bytes]) -> Iterator[tuple[str, torch.Tensor]]:
    # Deserialize one bucket at a time so only one bucket is materialized beyond the model itself.
    for blob in buckets:
        yield from load_safetensors(blob).items()


# One reload call per bucket means every layer outside the bucket is "not loaded" in that call, and
# vLLM warns about each of them. That is expected here; the tensor count returned is what we check.
for _name in ("vllm.model_executor.model_loader.reload.layerwise",
              "vllm.model_executor.model_loader.reload.inplace"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class WeightReloadExtension:
    """Mixed into vLLM's worker class; ``self`` is the worker."""

    def remax_reload_safetensors(self, buckets: list[bytes]) -> int:
        """Load HF-named tensors from safetensors blobs; returns the number of tensors loaded.

        A bucket must hold whole decoder layers (the exporter guarantees it): vLLM fuses q/k/v and
        gate/up, and a layer whose parts arrive in different reload calls would be processed half-new.
        """
        return self._remax_reload(_tensors(buckets))

    def remax_init_collective(self, host: str, port: int, rank_offset: int, world_size: int,
                              backend: str, timeout_s: float | None = None) -> bool:
        """Join the learner's weight-sync group (see ``remax_ray.sync.collective``)."""
        from remax_ray.sync.collective import init_group

        self._remax_group = init_group(host, port, rank_offset + getattr(self, "rank", 0), world_size, backend,
                                       timeout_s)
        return True

    def remax_receive_collective(self, meta: list) -> int:
        """Receive every tensor the learner broadcasts, then reload them in place."""
        from remax_ray.sync.collective import receive_in_worker

        device = next(self.model_runner.get_model().parameters()).device
        # Tuples may arrive as lists after vLLM's RPC serialization.
        meta = [(name, dtype, tuple(shape)) for name, dtype, shape in meta]
        return self._remax_reload(iter(receive_in_worker(self._remax_group, meta, device)))

    def _remax_reload(self, named: Iterator[tuple[str, torch.Tensor]]) -> int:
        names: list[str] = []

        def counted() -> Iterator[tuple[str, torch.Tensor]]:
            for name, tensor in named:
                names.append(name)
                yield name, tensor

        self.reload_weights(weights_iterator=counted())
        if any("embed_tokens" in name for name in names):
            _retie_lm_head(self.model_runner.get_model())
        return len(names)


def _retie_lm_head(model: torch.nn.Module) -> None:
    """Refresh a tied LM head after its embedding was reloaded.

    With tied embeddings the checkpoint carries only ``embed_tokens``. vLLM's layer-wise reload
    re-processes that layer but treats the LM head as "not loaded", and on CPU the head computes
    through a GEMM handle packed from the weight at load time, so it keeps the OLD weights even
    though the parameter is shared (measured on SmolLM2: 1.2 nats max |dlogp| after a change).
    Re-running the head's post-load processing rebuilds that handle from the shared tensor.
    """
    config = getattr(model, "config", None)
    head, inner = getattr(model, "lm_head", None), getattr(model, "model", None)
    embed = getattr(inner, "embed_tokens", None)
    if not getattr(config, "tie_word_embeddings", False) or head is None or embed is None:
        return
    if head.weight.data_ptr() != embed.weight.data_ptr():
        with torch.no_grad():
            head.weight.copy_(embed.weight)
    method = getattr(head, "quant_method", None)
    if method is not None:
        method.process_weights_after_loading(head)
