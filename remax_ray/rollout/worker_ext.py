"""vLLM worker extension: in-place weight reload from safetensors bytes (no disk).

vLLM instantiates this mixin inside each worker process (``LLM(worker_extension_cls=...)``) and we
reach it through ``llm.collective_rpc``. Calling the model's ``load_weights`` directly fails on CPU
after start-up (repacked params lose ``weight_loader``); ``reload_weights`` re-runs the loader's
layer-wise processing, so it works on CPU and GPU alike.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from safetensors.torch import load as load_safetensors


def _tensors(buckets: list[bytes]) -> Iterator[tuple[str, torch.Tensor]]:
    # Deserialize one bucket at a time so only one bucket is materialized beyond the model itself.
    for blob in buckets:
        yield from load_safetensors(blob).items()


class WeightReloadExtension:
    """Mixed into vLLM's worker class; ``self`` is the worker."""

    def remax_reload_safetensors(self, buckets: list[bytes]) -> int:
        """Load HF-named tensors from safetensors blobs; returns the number of tensors loaded.

        A bucket must hold whole decoder layers (the exporter guarantees it): vLLM fuses q/k/v and
        gate/up, and a layer whose parts arrive in different reload calls would be processed half-new.
        """
        names: list[str] = []

        def counted() -> Iterator[tuple[str, torch.Tensor]]:
            for name, tensor in _tensors(buckets):
                names.append(name)
                yield name, tensor

        self.reload_weights(weights_iterator=counted())
        return len(names)
