"""Weight sync from the learner to the generators: CPU (raw tensor buckets via the object store and a
shared arena the vLLM worker maps) or a collective broadcast (NCCL, gloo)."""
