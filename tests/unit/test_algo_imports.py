"""The algorithm core's public names. (That it imports no ray, vllm or transformers is an
import-linter contract: tests/unit/test_layout.py.)"""

from __future__ import annotations


def test_public_names_exported() -> None:
    import remax_ray.algo as algo

    for name in algo.__all__:
        assert hasattr(algo, name), name
    assert {"token_logprobs", "remax_advantages", "kl_loss", "aggregate", "ESTIMATORS"} <= set(algo.__all__)
