"""Seeds as pure functions of what they belong to, mixed so that neighbours are unrelated.

Every sampled response gets its own seed from (run seed, step, prompt index, sample index), so a run
is reproducible regardless of how prompts are sharded across generator replicas or how vLLM batches
requests; the learner's per-epoch shuffles come from (run seed, update, epoch) the same way.
"""

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    # A well-mixed 64-bit hash: neighbouring (step, prompt) tuples get unrelated seeds.
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*parts: int) -> int:
    """A deterministic seed in [0, 2**31) for the tuple ``parts``."""
    h = 0
    for part in parts:
        h = _splitmix64(h ^ (part & _MASK64))
    return h & 0x7FFFFFFF


def sample_seed(run_seed: int, step: int, prompt_index: int, sample_index: int) -> int:
    """A deterministic seed in [0, 2**31) for one sampled response."""
    return mix_seed(run_seed, step, prompt_index, sample_index)
