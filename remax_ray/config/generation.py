"""Sections for what is generated and how it is scored: ``model``, ``rollout``, ``reward``."""

from dataclasses import dataclass

from remax_ray.config.base import _field

__all__ = ["MODEL_DTYPES", "REWARD_KINDS", "ModelConfig", "RewardConfig", "RolloutConfig"]

MODEL_DTYPES = ("auto", "float32", "bfloat16")
REWARD_KINDS = ("vader", "function", "hf")


@dataclass(frozen=True)
class ModelConfig:
    """The policy model (also the frozen reference model for the KL penalty)."""

    path: str = _field(
        "builtin:smollm2-135m-instruct",
        "Hugging Face model folder, or 'builtin:<asset>' resolved by the assets step.",
    )
    dtype: str = _field(
        "auto",
        "Weight dtype: auto | float32 | bfloat16 (auto = float32 on CPU, bfloat16 on GPU).",
    )
    trust_remote_code: bool = _field(
        False, "Pass trust_remote_code to transformers and vLLM."
    )


@dataclass(frozen=True)
class RolloutConfig:
    """Response generation by the vLLM generator actors."""

    num_generators: int = _field(1, "Number of vLLM generator actors; prompts are split between them.")
    samples_per_prompt: int = _field(
        1,
        "Sampled responses per prompt (the greedy baseline response is generated in addition when the estimator needs it).",
    )
    temperature: float = _field(
        1.0, "Sampling temperature (> 0); greedy decoding for the baseline is added separately."
    )
    top_p: float = _field(1.0, "Nucleus sampling probability mass, in (0, 1].")
    max_new_tokens: int = _field(24, "Maximum number of tokens generated per response.")
    max_prompt_tokens: int = _field(64, "Prompts are truncated to this many tokens.")
    kv_cache_gib: float = _field(
        1.0, "KV-cache size in GiB per generator on CPU (sets VLLM_CPU_KVCACHE_SPACE)."
    )
    gpu_memory_utilization: float = _field(
        0.3, "Fraction of GPU memory each vLLM engine may use, in (0, 1]."
    )
    enforce_eager: bool = _field(True, "Disable CUDA graphs in vLLM (faster start-up, slower decoding).")
    num_cpus_per_generator: float = _field(1.0, "Ray CPUs reserved per generator actor.")


@dataclass(frozen=True)
class RewardConfig:
    """The reward actor that scores (prompt, response) pairs."""

    kind: str = _field(
        "hf",
        "Reward source: hf (a sequence-classification reward model; the default is the learned "
        "sentiment reward model) | vader (VADER sentiment of the response) | function (a Python function).",
    )
    function: str = _field(
        "",
        "For kind=function: 'package.module:function', called as function(prompts, responses) -> list[float].",
    )
    model_path: str = _field(
        "builtin:sentiment-rm",
        "For kind=hf: Hugging Face sequence-classification model folder (e.g. from remax-ray "
        "train-rm), or builtin:sentiment-rm (MiniLM fit on Pang & Lee snippet pairs by the assets step).",
    )
    template: str = _field(
        "{prompt}{response}",
        "Text given to the reward model; must contain {response} and may contain {prompt}.",
    )
    max_length: int = _field(256, "Reward-model inputs are truncated to this many tokens (kind=hf).")
    batch_size: int = _field(64, "Texts scored per reward-model forward pass.")
    score_response_only: bool = _field(
        True, "Score the response alone (the prompt is blanked before the template): the default task rewards the continuation's sentiment, not the review opening's."
    )
