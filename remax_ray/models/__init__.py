"""What remax-ray knows of a model's layout, in one place: the architecture adapter.

A plain package (no ray, no vllm at import): ``sync`` (bucketing), ``learner`` (FSDP2 wrapping),
``rollout`` (the worker extension's reload, the direct reload) and ``driver`` (the start-up line and
the refusal of what cannot be served) all ask :func:`adapter_for`. May import ``config`` and ``algo``.
"""

from remax_ray.models.adapter import (
    ADAPTERS,
    GENERIC,
    SYNC_NOISE,
    ModelAdapter,
    adapter_for,
    architectures_of,
    describe_path,
)

__all__ = ["ADAPTERS", "GENERIC", "SYNC_NOISE", "ModelAdapter", "adapter_for", "architectures_of", "describe_path"]
