"""Weight sync from the learner to the generators: CPU (raw tensor buckets via the object store and a
shared arena the vLLM worker maps) or a collective broadcast (NCCL, gloo).

Both sides import it (the learner's shell sends, the generator's worker extension receives); it
imports neither of them, nor ``ray``: torch, numpy and vLLM's stateless process group only.

Modules: :mod:`.cpu` (buckets, shared-memory arenas) and :mod:`.collective`. It may import ``models``.
"""
