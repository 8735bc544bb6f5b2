"""Shared fixtures. Ray starts once per session (tests/integration and tests/slow share it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Small KV cache for the tiny test engines; the real default sets its own from the config.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from remax_ray.assets.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_model_untied(tmp_path_factory) -> Path:
    """Untied head with large logits: a policy that a toy reward can move within a few steps."""
    from remax_ray.assets.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-untied"), tie_word_embeddings=False)


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory) -> Path:
    words = "the movie was a great film with good actors but the plot was boring and bad".split()
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    with open(path, "w") as f:
        for i in range(64):
            f.write(json.dumps({"prompt": " ".join(words[(i + k) % len(words)] for k in range(4 + i % 5))}) + "\n")
    return path
