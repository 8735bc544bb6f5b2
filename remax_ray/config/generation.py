"""Sections for what is generated and how it is scored: ``model``, ``rollout``, ``reward``."""

from dataclasses import dataclass

from remax_ray.config.base import AUTO, AutoBool, _field
from remax_ray.config.estimators import on_policy_names
from remax_ray.config.reward_kinds import kind_help, reward_kind

__all__ = ["INVALID_REWARD_POLICIES", "LONG_PROMPT_POLICIES", "MODEL_DTYPES",
           "ModelConfig", "RewardConfig", "RolloutConfig", "resolve_score_response_only"]

MODEL_DTYPES = ("auto", "float32", "bfloat16")
LONG_PROMPT_POLICIES = ("truncate", "skip", "error")
INVALID_REWARD_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class ModelConfig:
    """The policy model (also the frozen reference model for the KL penalty)."""

    path: str = _field(
        "builtin:smollm2-135m-instruct",
        "Hugging Face model folder, or 'builtin:<asset>' resolved by the assets step.",
    )
    reference_path: str = _field(
        "",
        "The frozen reference model of the KL penalty (empty = model.path). A resumed run keeps the "
        "reference recorded in its checkpoint, so pointing model.path at a checkpoint to continue "
        "training does not move the KL anchor when this is set to the original model.",
    )
    dtype: str = _field(
        "auto",
        "Weight dtype: auto | float32 | bfloat16 (auto = float32 on CPU, bfloat16 on GPU).",
    )
    trust_remote_code: bool = _field(
        False,
        "Run Python code shipped in the model folder (trust_remote_code for transformers and vLLM); "
        "passed on only when true. Set it only for folders whose code you trust.",
    )
    allow_pickle_weights: bool = _field(
        False,
        "Accept a folder whose weights are only pickle files (pytorch_model*.bin) for model.path and "
        "reward.model_path. Off by default because unpickling can run arbitrary code: safetensors "
        "weights are required unless this is true.",
    )
    # LoRA: addressed as model.lora.<key> (``model.lora.rank=8``, or ``lora: {rank: 8}`` in YAML).
    lora_rank: int = _field(
        0,
        "LoRA rank (0 = full fine-tuning). > 0: the learner trains a PEFT LoRA adapter on the frozen "
        "model, the KL reference is that model with the adapter off (no second copy), and each sync "
        "sends only the adapter into the vLLM engines (docs/lora.md). Set as model.lora.rank.",
    )
    lora_alpha: float = _field(16.0, "LoRA scaling numerator: the adapter's update is scaled by alpha / rank.")
    lora_dropout: float = _field(
        0.0,
        "LoRA dropout as written into the adapter's config; the learner trains with 0, as it zeroes "
        "every dropout of the policy (vLLM samples without dropout, so the log-probs must match).",
    )
    lora_target_modules: str = _field(
        "all-linear",
        "Modules that get an adapter: all-linear (every linear layer of the decoder layers, from the "
        "model's architecture adapter) or comma-separated module names (q_proj,v_proj).",
    )
    lora_save_merged: bool = _field(
        False,
        "Also write the merged model (base + adapter, a plain HF folder) into each checkpoint's "
        "merged/ folder; the checkpoint itself holds the adapter (PEFT's folder layout).",
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
    top_p: float = _field(
        1.0,
        "Nucleus sampling probability mass; must be 1.0: the learner scores responses with the full "
        "softmax, so top_p < 1 would make training off-policy.",
    )
    max_new_tokens: int = _field(24, "Maximum number of tokens generated per response.")
    max_prompt_tokens: int = _field(
        64, "Longest prompt, in tokens of the policy's tokenizer (see rollout.long_prompts)."
    )
    long_prompts: str = _field(
        "truncate",
        "A prompt longer than rollout.max_prompt_tokens, found on the driver before any actor starts "
        "(counted and logged): truncate (keep its last max_prompt_tokens tokens; the reward sees the "
        "truncated text) | skip (drop it) | error (refuse to start).",
    )
    kv_cache_gib: float = _field(
        0.0, "KV-cache size in GiB per generator on CPU; 0: sized to the run (every sequence of a "
             "generator's largest call, a step's or an evaluation's, at full length).")
    gpu_memory_utilization: float = _field(
        0.3, "Fraction of GPU memory each vLLM engine may use, in (0, 1]."
    )
    enforce_eager: bool = _field(True, "Disable CUDA graphs in vLLM (faster start-up, slower decoding).")
    overlap: AutoBool = _field(
        AUTO,
        lambda: (
            "One-step-off: the generators sample step t+1 (with the weights one update behind) while "
            "the learner trains on step t; the learner corrects with truncated importance weights "
            "(algo.importance_cap). true | false | auto. auto turns it on only where it can pay: the "
            "learner and the generators on devices of their own (GPUs), or on cores of their own "
            "(cluster.threads_per_actor x actors within the node's cores); on shared cores the two "
            "take turns anyway and measured slower (docs/PERFORMANCE.md). Only for the estimators "
            f"without PPO's ratio ({on_policy_names()}), and with algo.kl_placement=reward."))
    num_cpus_per_generator: float = _field(1.0, "Ray CPUs reserved per generator actor.")


@dataclass(frozen=True)
class RewardConfig:
    """The reward actor that scores (prompt, response) pairs."""

    kind: str = _field("hf", kind_help)  # read when shown, so every registered kind is listed
    function: str = _field(
        "",
        "For kind=function: 'package.module:function', called as function(prompts, responses) -> list[float].",
    )
    model_path: str = _field(
        "builtin:sentiment-rm",
        "For kind=hf: Hugging Face sequence-classification model folder (e.g. from remax-ray "
        "train-rm), builtin:sentiment-rm (MiniLM fit on Pang & Lee snippet pairs by the assets step) "
        "or builtin:steered-rm (MiniLM fit on the same snippets after an instruction to continue "
        "positively or negatively; for builtin:steered-reviews).",
    )
    template: str = _field(
        "{prompt}{response}",
        "Text given to the reward model; must contain {response} and may contain {prompt}.",
    )
    max_length: int = _field(256, "Reward-model inputs are truncated to this many tokens (kind=hf).")
    batch_size: int = _field(64, "Texts scored per reward-model forward pass.")
    score_response_only: AutoBool = _field(
        AUTO,
        "Blank the prompt before the reward sees it: true | false | auto. auto blanks it only for "
        "builtin:sentiment-rm (fit on continuations alone: the default task rewards the "
        "continuation's sentiment, not the review opening's) and for vader (a lexicon scores the "
        "response alone); a reward function, builtin:steered-rm (its prompt's instruction decides "
        "the reward) and a reward model given by path see the real prompt.",
    )
    on_invalid: str = _field(
        "error",
        "A NaN or infinite reward: error (stop, naming the prompt) | skip (the scorer returns NaN "
        "for it and logs it; the trainer drops that prompt's samples from the step and counts them).",
    )
    trust_remote_code: bool = _field(
        False,
        "For kind=hf: run Python code shipped in the reward model's folder (trust_remote_code); "
        "separate from model.trust_remote_code because it is another folder.",
    )

    @property
    def blanks_prompt(self) -> bool:
        """Whether the reward sees an empty prompt (``score_response_only`` resolved)."""
        return resolve_score_response_only(self)[0]


def resolve_score_response_only(reward: RewardConfig) -> tuple[bool, str]:
    """``reward.score_response_only`` resolved: (blank the prompt?, why, in words).

    An explicit true/false wins. ``auto`` blanks the prompt only where the kind's entry of
    :data:`~remax_ray.config.reward_kinds.REWARD_KINDS` says the reward scores the response alone by design
    (``RewardKind.response_only``): ``builtin:sentiment-rm`` (fit on continuations with an empty
    prompt) and VADER (a lexicon on one text). A reward function, ``builtin:steered-rm`` and a
    reward model given by path get the real prompt, as every reward model in RLHF reads prompt and
    response.
    """
    setting, kind = reward.score_response_only, reward_kind(reward.kind)
    which = kind.describe(reward)
    if setting is True or setting is False:
        return setting, f"{which}; reward.score_response_only={str(setting).lower()}"
    auto = f"reward.score_response_only={AUTO}"
    alone = kind.response_only(reward)
    if alone is not None:
        return True, f"{alone}; {auto}"
    return False, f"{which} reads the prompt; {auto}"
