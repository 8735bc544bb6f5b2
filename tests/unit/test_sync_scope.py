"""Tests for reload_scope: which of vLLM's modules a bucket's reload prepares and finalises."""

from __future__ import annotations

from remax_ray.rollout.worker_ext import reload_scope

# Module names of a vLLM Llama with 2 layers (q/k/v fused into qkv_proj, gate/up into gate_up_proj).
VLLM_LLAMA = {
    "", "model", "model.embed_tokens", "model.layers", "model.layers.0", "model.layers.0.self_attn",
    "model.layers.0.self_attn.qkv_proj", "model.layers.0.self_attn.o_proj", "model.layers.0.mlp",
    "model.layers.0.mlp.gate_up_proj", "model.layers.0.mlp.down_proj", "model.layers.0.input_layernorm",
    "model.layers.0.post_attention_layernorm", "model.layers.1", "model.layers.1.mlp", "model.norm", "lm_head",
}


def test_layers_are_whole_and_other_tensors_map_to_their_module() -> None:
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.0.self_attn.k_proj.weight", "model.layers.0.mlp.up_proj.weight",
             "model.layers.1.mlp.down_proj.weight", "model.norm.weight"]
    # HF's q_proj / up_proj are not vLLM modules, but the decoder layer that holds them is.
    assert reload_scope(names, VLLM_LLAMA.__contains__) == ["model.embed_tokens", "model.layers.0",
                                                            "model.layers.1", "model.norm"]


def test_an_untied_head_is_its_own_module() -> None:
    assert reload_scope(["lm_head.weight"], VLLM_LLAMA.__contains__) == ["lm_head"]


def test_names_that_vllm_maps_elsewhere_give_no_scope() -> None:
    # A GPT-2 style checkpoint name: vLLM renames it, so the bucket needs the whole-model reload.
    assert reload_scope(["transformer.h.0.attn.c_attn.weight"], VLLM_LLAMA.__contains__) is None
    assert reload_scope(["model.layers.0.mlp.up_proj.weight", "transformer.wte.weight"],
                        VLLM_LLAMA.__contains__) is None
    assert reload_scope(["bias"], VLLM_LLAMA.__contains__) is None  # no owning module at all


def test_empty_bucket_has_an_empty_scope() -> None:
    assert reload_scope([], VLLM_LLAMA.__contains__) == []
