"""Timed pieces of the CPU weight sync, for bench/sync_breakdown.py.

``ProbeExtension`` is a vLLM worker extension (importable by the worker process when bench/ is on
PYTHONPATH) whose methods do what ``WeightReloadExtension`` does, with a clock around each piece.
``safetensors_buckets`` is the exporter this project had before the shared arena: the learner's
weights as safetensors blobs (what ``remax_ray.sync.cpu.pack_buckets`` was), kept here so that both
paths are measured in one run.
"""

from __future__ import annotations

import time

import torch

from remax_ray.rollout.worker_ext import WeightReloadExtension
from remax_ray.sync.cpu import ArenaReader, ArenaSlice, _cpu, plan_buckets


def safetensors_buckets(named, bucket_bytes: int, dtype: torch.dtype) -> list[bytes]:
    from safetensors.torch import save

    tensors = dict(named)
    plan = plan_buckets([(n, t.numel() * dtype.itemsize) for n, t in tensors.items()], bucket_bytes)
    return [save({n: _cpu(tensors[n], dtype) for n in names}) for names in plan]


class ProbeExtension(WeightReloadExtension):
    def _whole_model_reload(self, named: list[tuple[str, torch.Tensor]]) -> dict[str, float]:
        """The reload before this change: vLLM's whole-model reload_weights, then the tied head
        re-packed from its weight."""
        start = time.perf_counter()
        self.reload_weights(weights_iterator=iter(named))
        reloaded = time.perf_counter()
        model = self.model_runner.get_model()
        if any("embed_tokens" in name for name, _ in named) and model.config.tie_word_embeddings:
            model.lm_head.quant_method.process_weights_after_loading(model.lm_head)
        return {"reload": reloaded - start, "retie": time.perf_counter() - reloaded}

    def probe_safetensors(self, blob: bytes) -> dict[str, float]:
        """The former worker path: deserialise the blob, then reload the whole model."""
        from safetensors.torch import load

        start = time.perf_counter()
        named = list(load(blob).items())
        return {"deserialise": time.perf_counter() - start, **self._whole_model_reload(named)}

    def probe_arena(self, whole_model: bool, path: str, capacity: int, generation: int, offsets: list[int],
                    names: list[str], dtypes: list[str], shapes: list[list[int]]) -> dict[str, float]:
        """View the tensors in the generator's arena, then reload: the whole model as before, or
        as ``remax_reload_arena`` does now (the bucket's modules; the head shares the new handle)."""
        start = time.perf_counter()
        reader = self.__dict__.setdefault("_probe_arena", ArenaReader())
        named = reader.tensors(ArenaSlice(path, capacity, generation, offsets), names, dtypes, shapes)
        viewed = time.perf_counter() - start
        if whole_model:
            return {"deserialise": viewed, **self._whole_model_reload(named)}
        self._remax_reload(named)
        return {"deserialise": viewed, **self.remax_timing}

    def probe_profile(self, whole_model: bool, *where) -> dict[str, float]:
        """``probe_arena`` under cProfile: the reload's seconds by what they are spent on."""
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        self.probe_arena(whole_model, *where)
        profile.disable()
        stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, prims, tottime, cumtime, callers)
        out = dict.fromkeys(PROFILED, 0.0)
        for (_, _, func), (_, _, tottime, cumtime, _) in stats.items():
            for label, (name, column) in PROFILED.items():
                if name in func:
                    out[label] += tottime if column == "tottime" else cumtime
        return out


PROFILED = {
    "oneDNN weight packing": ("create_onednn_mm_handler", "tottime"),
    "direct route (planning and packing)": ("direct_reload", "cumtime"),
    "tensor copies": ("method 'copy_'", "tottime"),
    "prepare (layers to meta)": ("initialize_layerwise_reload", "cumtime"),
    "finalize (layers back)": ("finalize_layerwise_processing", "cumtime"),
}
"""What cProfile attributes the reload's time to (function name fragment, which time to add)."""
