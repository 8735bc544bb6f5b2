"""A LoRA run's model is checked on the driver before any actor starts (driver/preflight.check_lora)."""

from __future__ import annotations

import pytest

from remax_ray.assets.tiny_archs import build_tiny_arch
from remax_ray.config import ConfigError, load_config
from remax_ray.driver.preflight import check_lora


def _cfg(model, *overrides: str):
    return load_config(None, [f"model.path={model}", "model.lora.rank=8", *overrides])


def test_all_linear_targets_the_decoders_linear_layers(tiny_model, caplog):
    caplog.set_level("INFO")
    check_lora(_cfg(tiny_model), str(tiny_model))
    assert "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in caplog.text
    assert "lm_head" not in caplog.text.split("adapters on")[1]


def test_a_target_module_the_model_lacks_is_named(tiny_model):
    with pytest.raises(ConfigError, match=r"\['qkv_proj'\] are not modules of .*all-linear would take"):
        check_lora(_cfg(tiny_model, "model.lora.target_modules=q_proj,qkv_proj"), str(tiny_model))


def test_an_architecture_vllm_serves_without_lora_is_refused(tiny_model, tmp_path):
    gpt2 = build_tiny_arch("gpt2", tmp_path / "gpt2", tiny_model)
    with pytest.raises(ConfigError, match="vLLM does not serve LoRA adapters for GPT2LMHeadModel"):
        check_lora(_cfg(gpt2), str(gpt2))
