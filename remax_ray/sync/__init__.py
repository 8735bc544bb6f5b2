"""Weight sync from the learner to the generators: CPU (safetensors via the object store) or NCCL."""
