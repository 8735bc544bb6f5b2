"""The architecture adapter (remax_ray/models): how each family's tensors are grouped and named,
and the generic path an unknown architecture takes. The engines' side is tests/integration/
test_model_matrix.py."""

from __future__ import annotations

import json

import pytest

from remax_ray.models import ADAPTERS, GENERIC, adapter_for, architectures_of, describe_path
from remax_ray.sync.cpu import plan_buckets


@pytest.mark.parametrize(("arch", "name", "group"), [
    ("LlamaForCausalLM", "model.layers.3.mlp.up_proj.weight", "model.layers.3"),
    ("LlamaForCausalLM", "model.norm.weight", "model.norm.weight"),
    ("Qwen3ForCausalLM", "model.layers.0.self_attn.q_norm.weight", "model.layers.0"),
    ("Phi3ForCausalLM", "model.layers.1.self_attn.qkv_proj.weight", "model.layers.1"),
    ("GPTNeoXForCausalLM", "gpt_neox.layers.1.attention.query_key_value.weight", ""),
    ("GPT2LMHeadModel", "transformer.h.0.attn.c_attn.weight", ""),
    ("SomeNewForCausalLM", "model.layers.0.mlp.up_proj.weight", ""),
])
def test_layer_groups(arch, name, group) -> None:
    """The reload unit of a tensor: its decoder layer, or, for a whole-model family and the generic
    path, the whole model (one unit, so one bucket and vLLM's own whole-model reload)."""
    assert adapter_for([arch]).layer_group(name) == group


def test_an_unknown_architecture_syncs_the_whole_model_in_one_bucket() -> None:
    sizes = [("model.embed_tokens.weight", 10), ("model.layers.0.a", 10), ("model.layers.1.a", 10),
             ("lm_head.weight", 10)]
    assert adapter_for("SomeNewForCausalLM") is GENERIC and not GENERIC.known
    assert plan_buckets(sizes, 1, GENERIC.layer_group) == [[n for n, _ in sizes]]
    llama = adapter_for("LlamaForCausalLM")
    assert len(plan_buckets(sizes, 1, llama.layer_group)) == 4  # one unit per bucket at a 1-byte bound


def test_decoder_layers_and_vllm_names() -> None:
    neox = adapter_for("GPTNeoXForCausalLM")
    assert neox.is_decoder_layer("gpt_neox.layers.11") and not neox.is_decoder_layer("gpt_neox.layers.11.mlp")
    assert neox.to_vllm("gpt_neox.layers.0.attention.dense") == "model.layers.0.attention.dense"
    assert neox.to_vllm("embed_out.weight") == "lm_head.weight"
    gpt2 = adapter_for("GPT2LMHeadModel")
    assert gpt2.is_decoder_layer("transformer.h.0") and not gpt2.is_decoder_layer("model.layers.0")
    assert adapter_for("LlamaForCausalLM").to_vllm("model.norm.weight") == "model.norm.weight"


def test_only_layouts_whose_loader_passes_tensors_unchanged_take_the_direct_reload() -> None:
    direct = sorted(a for a, adapter in ADAPTERS.items() if adapter.direct_reload)
    assert direct == ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]
    assert not GENERIC.direct_reload


def test_the_start_up_line_names_the_path(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["SomeNewForCausalLM"]}))
    archs = architectures_of(tmp_path)
    assert archs == ["SomeNewForCausalLM"]
    assert "not in the tested matrix" in describe_path(archs) and "whole-model reload" in describe_path(archs)
    assert "direct reload" in describe_path(["Qwen2ForCausalLM"])
    assert "one bucket" in describe_path(["GPT2LMHeadModel"])


@pytest.mark.parametrize(("family", "targets"), [
    ("llama", ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]),
    ("phi3", ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]),
    ("gpt2", ["c_attn", "c_fc", "c_proj"]),
    ("gpt-neox", ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"]),
])
def test_lora_all_linear_is_every_linear_layer_of_the_decoder(family, targets) -> None:
    """model.lora.target_modules=all-linear, per family (built on the meta device): the decoder's
    linear layers (GPT-2's Conv1D included), never the embedding or the LM head."""
    import torch
    from transformers import AutoModelForCausalLM

    from remax_ray.assets.tiny_archs import TINY_ARCHITECTURES

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(TINY_ARCHITECTURES[family][0](320))
    names = {n: type(m).__name__ for n, m in model.named_modules()}
    assert adapter_for(type(model).__name__).lora_targets(names) == targets
