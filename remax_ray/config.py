"""Typed configuration for remax-ray.

The configuration is a tree of frozen dataclasses, one per section
(``model``, ``rollout``, ``reward``, ``learner``, ``algo``, ``run``,
``cluster``), collected in :class:`Config`.  Every field carries its help text
in ``metadata["help"]``; :func:`describe_fields` exposes it for ``--help`` and
:func:`to_yaml` writes it as comments, which is how
``remax_ray/configs/default.yaml`` is produced.

:func:`load_config` starts from the dataclass defaults, applies a YAML file
(a mapping of sections to mappings of keys), then ``section.key=value``
overrides, and validates the result.  Every problem is reported as a single
:class:`ConfigError` whose message names the offending key.

This module imports only the standard library and PyYAML; the estimator and
KL/loss registries are imported lazily from :mod:`remax_ray.algo` during
validation.
"""

import dataclasses
import difflib
import math
import os
import re
import string
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

__all__ = [
    "AlgoConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DEFAULT_CONFIG_PATH",
    "LearnerConfig",
    "ModelConfig",
    "RewardConfig",
    "RolloutConfig",
    "RunConfig",
    "SECTIONS",
    "apply_overrides",
    "config_from_dict",
    "config_keys",
    "describe_fields",
    "dump_yaml",
    "load_config",
    "to_yaml",
    "validate",
]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "configs" / "default.yaml"

MODEL_DTYPES = ("auto", "float32", "bfloat16")
REWARD_KINDS = ("vader", "function", "hf")
SYNC_TRANSPORTS = ("auto", "cpu", "nccl", "gloo")
LEARNER_DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the problem."""


def _field(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


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
        "vader",
        "Reward source: vader (VADER sentiment of the response) | function (a Python function) | hf (a sequence-classification model).",
    )
    function: str = _field(
        "",
        "For kind=function: 'package.module:function', called as function(prompts, responses) -> list[float].",
    )
    model_path: str = _field(
        "", "For kind=hf: Hugging Face sequence-classification model folder."
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


@dataclass(frozen=True)
class LearnerConfig:
    """The torch learner actor (AdamW optimiser)."""

    lr: float = _field(5e-5, "AdamW learning rate (> 0).")
    weight_decay: float = _field(0.0, "AdamW weight decay (>= 0).")
    beta1: float = _field(0.9, "AdamW beta1, in [0, 1).")
    beta2: float = _field(0.999, "AdamW beta2, in [0, 1).")
    warmup_steps: int = _field(0, "Linear learning-rate warm-up over this many steps (0 = none).")
    max_grad_norm: float = _field(1.0, "Gradient-norm clipping threshold (0 disables clipping).")
    micro_batch_size: int = _field(
        8, "Sequences per forward/backward pass; gradients are accumulated over a mini-batch."
    )
    mini_batch_size: int = _field(
        0,
        "Sequences per optimizer step (0 = the whole step's batch, one optimizer step per step). "
        "Only PPO may split a step into several optimizer steps: it corrects for the policy moving "
        "between them with its clipped importance ratio.",
    )
    critic_lr: float = _field(1e-4, "AdamW learning rate of PPO's value model (its own optimizer).")
    gradient_checkpointing: bool = _field(False, "Enable activation checkpointing in the policy.")
    num_cpus: float = _field(1.0, "Ray CPUs reserved for the learner actor.")


@dataclass(frozen=True)
class AlgoConfig:
    """The policy-gradient estimator and its loss."""

    estimator: str = _field(
        "remax",
        "Advantage estimator from remax_ray.algo.ESTIMATORS: remax (REINFORCE with the greedy "
        "response's reward as baseline), reinforce, rloo, grpo, or ppo (GAE with a learned value "
        "model, clipped surrogate).",
    )
    kl_coef: float = _field(0.02, "Coefficient of the KL penalty to the reference model (0 = off).")
    kl_estimator: str = _field(
        "k1",
        "KL estimator: k1 | k2 | k3. With kl_placement=loss only k2 (whose expected gradient is that "
        "of KL(pi||ref)) and k3 (that of KL(ref||pi)) pull toward the reference; k1 is refused there.",
    )
    kl_placement: str = _field(
        "reward", "Where the KL penalty goes: reward (subtracted from the reward) | loss (added to the loss)."
    )
    loss_agg: str = _field(
        "token-mean", "Loss aggregation: token-mean | seq-mean-token-mean | seq-sum."
    )
    score_clip: float = _field(0.0, "Clip rewards to [-score_clip, score_clip] (0 = no clipping).")
    clip_eps: float = _field(0.2, "PPO ratio clipping epsilon (> 0).")
    value_clip: float = _field(0.2, "PPO value-loss clipping around the rollout-time values (> 0).")
    epochs: int = _field(
        1, "Passes over each step's batch (PPO's K; DeepSpeed-Chat's default 1). Must be 1 for the "
        "on-policy estimators remax, reinforce, rloo and grpo.")
    whiten_advantages: bool = _field(
        True, "PPO: normalise GAE advantages to zero mean and unit variance over the batch's tokens.")
    gamma: float = _field(1.0, "Discount factor for token-level estimators, in [0, 1].")
    lam: float = _field(0.95, "GAE lambda for token-level estimators, in [0, 1].")


@dataclass(frozen=True)
class RunConfig:
    """The training loop, evaluation and checkpoints."""

    steps: int = _field(30, "Number of training steps.")
    prompts_per_step: int = _field(16, "Prompts sampled per training step.")
    seed: int = _field(0, "Random seed for prompt sampling, generation and the learner.")
    dataset: str = _field(
        "builtin:movie-reviews",
        "Prompt dataset: 'builtin:<asset>' or a .jsonl file whose records have a \"prompt\" field.",
    )
    eval_every: int = _field(10, "Evaluate every this many steps (0 = only before and after training).")
    eval_prompts: int = _field(32, "Number of held-out prompts used for evaluation.")
    save_every: int = _field(0, "Save a checkpoint every this many steps (0 = only at the end).")
    output_dir: str = _field("runs/default", "Directory for metrics, the resolved config and checkpoints.")
    progress: bool = _field(True, "Show a progress bar.")


@dataclass(frozen=True)
class ClusterConfig:
    """The Ray cluster and weight synchronisation."""

    address: str = _field(
        "", "Ray address to connect to (empty: the RAY_ADDRESS environment variable, else a local Ray)."
    )
    num_cpus: int = _field(0, "CPUs for a local Ray instance (0 = all); ignored when connecting to a cluster.")
    sync_transport: str = _field(
        "auto",
        "Learner-to-generator weight transport: auto | cpu | nccl | gloo. cpu: safetensors buckets "
        "through the Ray object store; nccl/gloo: broadcast over a stateless process group (nccl needs "
        "a CUDA learner). auto picks nccl when the learner is on CUDA, else cpu.",
    )
    sync_bucket_mb: int = _field(64, "Weights are sent in buckets of about this many MiB.")
    device: str = _field("auto", "Learner device: auto | cpu | cuda.")
    threads_per_actor: int = _field(
        0,
        "torch/OpenMP threads for each actor (0 = all cores of its node: generation, scoring and "
        "learning take turns, so each phase may use the whole machine).",
    )


@dataclass(frozen=True)
class Config:
    """The complete remax-ray configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    run: RunConfig = field(default_factory=RunConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain dict ``{section: {key: value}}``."""
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        """Raise :class:`ConfigError` if invalid; return ``self`` otherwise."""
        validate(self)
        return self


SECTIONS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(Config)}


# ---------------------------------------------------------------------------
# Introspection
# ---------------------------------------------------------------------------


def config_keys() -> list[str]:
    """All dotted keys (``section.key``) in declaration order."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def describe_fields() -> dict[str, str]:
    """Map every dotted key to its help text."""
    return {
        f"{s}.{f.name}": f.metadata["help"]
        for s, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
    }


def _section_fields(section: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(SECTIONS[section])}


# ---------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-5`` (no dot) as a float, not a string."""


_Loader.yaml_implicit_resolvers = {
    k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _yaml_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"))
    return text.removesuffix("\n...\n").rstrip("\n")


def to_yaml(config: Config) -> str:
    """Render ``config`` as YAML with every field's help text as a comment."""
    lines = [
        "# remax-ray configuration.",
        "# Load with `load_config(path)`; override single keys with `section.key=value`.",
    ]
    data = config.to_dict()
    for section, cls in SECTIONS.items():
        lines.append("")
        lines.append(f"# {cls.__doc__.strip()}")
        lines.append(f"{section}:")
        for f in dataclasses.fields(cls):
            for line in textwrap.wrap(f.metadata["help"], width=76):
                lines.append(f"  # {line}")
            lines.append(f"  {f.name}: {_yaml_scalar(data[section][f.name])}")
    return "\n".join(lines) + "\n"


def dump_yaml(config: Config, path: str | os.PathLike) -> Path:
    """Write ``config`` (with comments) to ``path``; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(config), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _close(word: str, choices: Sequence[str]) -> list[str]:
    """The single closest choice (as a list; empty when nothing is close)."""
    return difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)


def _did_you_mean(close: Sequence[str]) -> str:
    """``"; did you mean 'a' or 'b'? "`` or ``"; "`` when nothing is close."""
    if not close:
        return "; "
    return "; did you mean " + " or ".join(repr(c) for c in close) + "? "


def _unknown_key(section: str, key: str) -> ConfigError:
    dotted = f"{section}.{key}"
    names = list(_section_fields(section))
    valid = [f"{section}.{k}" for k in names]
    close = [f"{section}.{k}" for k in _close(key, names)]
    if not close:  # perhaps the key belongs to another section
        other = [k for k in config_keys() if not k.startswith(section + ".")]
        best = _close(key, [k.split(".", 1)[1] for k in other])
        close = [k for k in other if k.split(".", 1)[1] in best]
    return ConfigError(f"unknown key {dotted!r}{_did_you_mean(close)}valid keys: {', '.join(valid)}")


def _unknown_section(section: Any) -> ConfigError:
    close = _close(str(section), list(SECTIONS))
    return ConfigError(
        f"unknown section {section!r}{_did_you_mean(close)}valid sections: {', '.join(SECTIONS)}"
    )


def _type_name(tp: type) -> str:
    return tp.__name__


def _coerce(key: str, tp: type, value: Any) -> Any:
    """Check ``value`` against the field type ``tp``; return the stored value."""
    ok = False
    if tp is bool:
        ok = type(value) is bool
    elif tp is int:
        ok = type(value) is int
    elif tp is float:
        if type(value) is int:
            value = float(value)
        if type(value) is float:
            if not math.isfinite(value):
                raise ConfigError(f"{key}: expected a finite float, got {value!r}")
            ok = True
    elif tp is str:
        ok = type(value) is str
    else:  # pragma: no cover - every field is one of the four above
        raise TypeError(f"unsupported field type {tp!r} for {key}")
    if not ok:
        raise ConfigError(
            f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})"
        )
    return value


def _merge(data: dict[str, dict[str, Any]], section: Any, key: Any, value: Any) -> None:
    if section not in SECTIONS:
        raise _unknown_section(section)
    fields = _section_fields(section)
    if key not in fields:
        raise _unknown_key(section, str(key))
    data[section][key] = _coerce(f"{section}.{key}", fields[key].type, value)


def _from_data(data: dict[str, dict[str, Any]]) -> Config:
    return Config(**{s: SECTIONS[s](**data[s]) for s in SECTIONS})


def config_from_dict(mapping: Mapping[str, Any] | None, base: Config | None = None) -> Config:
    """Apply a nested ``{section: {key: value}}`` mapping on top of ``base``.

    Keys and types are checked; ranges are not (call :func:`validate`).
    """
    data = (base or Config()).to_dict()
    if mapping is None:
        return _from_data(data)
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            f"configuration must be a mapping of sections, got {type(mapping).__name__}"
        )
    for section, values in mapping.items():
        if section not in SECTIONS:
            raise _unknown_section(section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"section {section!r} must be a mapping of keys, got {values!r} "
                f"({type(values).__name__})"
            )
        for key, value in values.items():
            _merge(data, section, key, value)
    return _from_data(data)


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Apply ``section.key=value`` strings in order (later ones win).

    Values are parsed as YAML (``0.02``, ``false``, ``1e-5``); string fields
    keep the raw text.  Keys and types are checked; ranges are not.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    data = config.to_dict()
    for item in overrides:
        dotted, sep, raw = str(item).partition("=")
        dotted = dotted.strip()
        section, dot, key = dotted.partition(".")
        if not sep or not dot or not section or not key:
            raise ConfigError(
                f"override {item!r} must look like section.key=value (e.g. algo.kl_coef=0.02)"
            )
        if section not in SECTIONS:
            raise _unknown_section(section)
        fields = _section_fields(section)
        if key not in fields:
            raise _unknown_key(section, key)
        if fields[key].type is str:
            value: Any = raw
        else:
            try:
                value = _yaml_load(raw)
            except yaml.YAMLError:
                value = raw
        _merge(data, section, key, value)
    return _from_data(data)


def load_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> Config:
    """Defaults, then the YAML file at ``path``, then ``overrides``; validated."""
    config = Config()
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
        try:
            mapping = _yaml_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML in {str(path)!r}: {exc}") from None
        try:
            config = config_from_dict(mapping, config)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    config = apply_overrides(config, overrides)
    validate(config)
    return config


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _check(ok: bool, key: str, constraint: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {constraint} (got {value!r})")


def _choice(
    key: str,
    value: str,
    choices: Sequence[str],
    what: str = "value",
    aliases: Mapping[str, str] | None = None,
) -> None:
    if value not in choices:
        close = [aliases[value]] if aliases and value in aliases else _close(value, choices)
        raise ConfigError(
            f"{key}: unknown {what} {value!r}{_did_you_mean(close)}choices: {', '.join(choices)}"
        )


_RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("rollout.num_generators", lambda v: v >= 1, ">= 1"),
    ("rollout.samples_per_prompt", lambda v: v >= 1, ">= 1"),
    ("rollout.temperature", lambda v: v > 0, "> 0 (greedy decoding for the baseline is added separately)"),
    ("rollout.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("rollout.max_new_tokens", lambda v: v >= 1, ">= 1"),
    ("rollout.max_prompt_tokens", lambda v: v >= 1, ">= 1"),
    ("rollout.kv_cache_gib", lambda v: v > 0, "> 0"),
    ("rollout.gpu_memory_utilization", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("rollout.num_cpus_per_generator", lambda v: v >= 0, ">= 0"),
    ("reward.max_length", lambda v: v >= 1, ">= 1"),
    ("reward.batch_size", lambda v: v >= 1, ">= 1"),
    ("learner.lr", lambda v: v > 0, "> 0"),
    ("learner.weight_decay", lambda v: v >= 0, ">= 0"),
    ("learner.beta1", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("learner.beta2", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("learner.warmup_steps", lambda v: v >= 0, ">= 0"),
    ("learner.max_grad_norm", lambda v: v >= 0, ">= 0 (0 disables clipping)"),
    ("learner.micro_batch_size", lambda v: v >= 1, ">= 1"),
    ("learner.mini_batch_size", lambda v: v >= 0, ">= 0 (0 = the whole batch)"),
    ("learner.critic_lr", lambda v: v > 0, "> 0"),
    ("learner.num_cpus", lambda v: v >= 0, ">= 0"),
    ("algo.kl_coef", lambda v: v >= 0, ">= 0"),
    ("algo.score_clip", lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    ("algo.clip_eps", lambda v: v > 0, "> 0"),
    ("algo.value_clip", lambda v: v > 0, "> 0"),
    ("algo.epochs", lambda v: v >= 1, ">= 1"),
    ("algo.gamma", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("algo.lam", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("run.steps", lambda v: v >= 0, ">= 0"),
    ("run.prompts_per_step", lambda v: v >= 1, ">= 1"),
    ("run.eval_every", lambda v: v >= 0, ">= 0 (0 = only before and after training)"),
    ("run.eval_prompts", lambda v: v >= 1, ">= 1"),
    ("run.save_every", lambda v: v >= 0, ">= 0 (0 = only at the end)"),
    ("cluster.num_cpus", lambda v: v >= 0, ">= 0 (0 = all)"),
    ("cluster.sync_bucket_mb", lambda v: v >= 1, ">= 1"),
    ("cluster.threads_per_actor", lambda v: v >= 0, ">= 0 (0 = all cores)"),
]

_NON_EMPTY = ("model.path", "run.dataset", "run.output_dir")

_FUNCTION_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def _get(config: Config, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


def validate(config: Config) -> None:
    """Check value ranges and cross-field rules; raise :class:`ConfigError` on the first problem."""
    if not isinstance(config, Config):
        raise ConfigError(f"expected a Config, got {type(config).__name__}")
    # Types first (a Config may also have been built by hand).
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            _coerce(f"{section}.{f.name}", f.type, getattr(getattr(config, section), f.name))

    for key in _NON_EMPTY:
        if not _get(config, key).strip():
            raise ConfigError(f"{key}: must not be empty")

    for key, ok, constraint in _RANGES:
        value = _get(config, key)
        _check(ok(value), key, constraint, value)

    m, ro, rw, ln, al, run, cl = (
        config.model, config.rollout, config.reward, config.learner,
        config.algo, config.run, config.cluster,
    )

    _choice("model.dtype", m.dtype, MODEL_DTYPES, "dtype", {"bf16": "bfloat16", "fp32": "float32"})
    _choice("cluster.sync_transport", cl.sync_transport, SYNC_TRANSPORTS, "transport")
    _choice("cluster.device", cl.device, LEARNER_DEVICES, "device", {"gpu": "cuda"})

    # Reward.
    _choice("reward.kind", rw.kind, REWARD_KINDS, "reward kind")
    if rw.kind == "function":
        if not rw.function:
            raise ConfigError(
                "reward.function: required when reward.kind=function "
                "(form 'package.module:function')"
            )
        if not _FUNCTION_REF.match(rw.function):
            raise ConfigError(
                f"reward.function: must look like 'package.module:function' (got {rw.function!r})"
            )
    if rw.kind == "hf" and not rw.model_path.strip():
        raise ConfigError(
            "reward.model_path: required when reward.kind=hf "
            "(a Hugging Face sequence-classification folder)"
        )
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(rw.template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"reward.template: invalid format string {rw.template!r}: {exc}") from None
    if "response" not in names:
        raise ConfigError(f"reward.template: must contain '{{response}}' (got {rw.template!r})")
    extra = sorted(names - {"prompt", "response"})
    if extra:
        raise ConfigError(
            f"reward.template: only {{prompt}} and {{response}} placeholders are allowed "
            f"(got {', '.join('{' + n + '}' for n in extra)})"
        )

    # Batch shape.
    if run.prompts_per_step < ro.num_generators:
        raise ConfigError(
            f"run.prompts_per_step ({run.prompts_per_step}) must be >= "
            f"rollout.num_generators ({ro.num_generators}) so that every generator gets a prompt"
        )
    batch = run.prompts_per_step * ro.samples_per_prompt
    if batch % ln.micro_batch_size:
        raise ConfigError(
            f"run.prompts_per_step * rollout.samples_per_prompt "
            f"({run.prompts_per_step} * {ro.samples_per_prompt} = {batch}) must be divisible by "
            f"learner.micro_batch_size ({ln.micro_batch_size})"
        )

    # Algorithm registries (imported lazily: remax_ray.algo may import torch).
    from remax_ray.algo import ESTIMATORS
    from remax_ray.algo.kl import KL_ESTIMATORS, KL_PLACEMENTS
    from remax_ray.algo.losses import AGG_MODES

    _choice("algo.estimator", al.estimator, tuple(ESTIMATORS), "estimator")
    spec = ESTIMATORS[al.estimator]
    if ro.samples_per_prompt < spec.min_samples:
        raise ConfigError(
            f"algo.estimator: {al.estimator} needs rollout.samples_per_prompt >= "
            f"{spec.min_samples} (got {ro.samples_per_prompt})"
        )
    _choice("algo.kl_estimator", al.kl_estimator, tuple(KL_ESTIMATORS), "KL estimator")
    _choice("algo.kl_placement", al.kl_placement, tuple(KL_PLACEMENTS), "KL placement")
    _choice("algo.loss_agg", al.loss_agg, tuple(AGG_MODES), "loss aggregation")
    if al.kl_placement == "loss" and al.kl_estimator == "k1" and al.kl_coef > 0:
        # E_pi[grad log pi] = 0: k1's gradient in the loss is pure noise, with no pull to the reference.
        raise ConfigError(
            "algo.kl_estimator: k1 has a zero expected gradient on policy, so algo.kl_placement=loss "
            "would not pull toward the reference; use algo.kl_estimator=k2 (gradient of KL(pi||ref)) "
            "or k3 (gradient of KL(ref||pi)), or algo.kl_placement=reward"
        )
    mini = ln.mini_batch_size or batch
    if mini % ln.micro_batch_size or batch % mini:
        raise ConfigError(
            f"learner.mini_batch_size ({mini}) must divide the step's batch ({batch}) and be a "
            f"multiple of learner.micro_batch_size ({ln.micro_batch_size})"
        )
    if not spec.uses_ratio and (al.epochs > 1 or mini < batch):
        raise ConfigError(
            f"algo.estimator={al.estimator} is on-policy: it needs algo.epochs=1 and one optimizer "
            f"step per batch (learner.mini_batch_size=0 or {batch}); only ppo corrects for a policy "
            "that moved between optimizer steps"
        )


if __name__ == "__main__":  # print the commented default configuration
    print(to_yaml(Config()), end="")
