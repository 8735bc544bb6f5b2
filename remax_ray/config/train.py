"""The training configuration: the root :class:`Config`, its loading and its validation.

:class:`Config` collects the sections (``model``, ``rollout``, ``reward``,
``learner``, ``algo``, ``run``, ``cluster``).  :func:`load_config` starts from
the dataclass defaults, applies a YAML file (a mapping of sections to mappings
of keys), then ``section.key=value`` overrides, and validates the result.
Every problem is reported as a single :class:`ConfigError` whose message names
the offending key.  The generic machinery lives in :mod:`remax_ray.config.base`.

The estimator and KL/loss registries are imported lazily from
:mod:`remax_ray.algo` during validation (they import torch).
"""

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from remax_ray.config import base as common
from remax_ray.config import checks
from remax_ray.config.base import ConfigError
from remax_ray.config.checks import Range
from remax_ray.config.estimators import on_policy_names, ratio_names
from remax_ray.config.generation import (
    INVALID_REWARD_POLICIES,
    LONG_PROMPT_POLICIES,
    MODEL_DTYPES,
    ModelConfig,
    RewardConfig,
    RolloutConfig,
)
from remax_ray.config.optim import LEARNER_STRATEGIES, AlgoConfig, LearnerConfig
from remax_ray.config.reward_kinds import REWARD_KINDS
from remax_ray.config.runtime import (
    LEARNER_DEVICES,
    PLACEMENT_MODES,
    PLACEMENT_STRATEGIES,
    SYNC_TRANSPORTS,
    ClusterConfig,
    RunConfig,
)

__all__ = [
    "Config",
    "DEFAULT_CONFIG_PATH",
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

# Package data, in this package: remax_ray/config/default.yaml.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "default.yaml"


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


SECTIONS: dict[str, type] = common.sections_of(Config)


def config_keys() -> list[str]:
    """All dotted keys (``section.key``) in declaration order."""
    return common.keys_of(Config)


def describe_fields() -> dict[str, str]:
    """Map every dotted key to its help text."""
    return common.help_of(Config)


def to_yaml(config: Config) -> str:
    """Render ``config`` as YAML with every field's help text as a comment."""
    return common.render_yaml(config, [
        "remax-ray configuration.",
        "Load with `load_config(path)`; override single keys with `section.key=value`.",
    ])


def dump_yaml(config: Config, path: str | os.PathLike) -> Path:
    """Write ``config`` (with comments) to ``path``; parent folders are created."""
    return common.write_text_file(to_yaml(config), path)


def config_from_dict(mapping: Mapping[str, Any] | None, base: Config | None = None) -> Config:
    """Apply a nested ``{section: {key: value}}`` mapping on top of ``base``.

    Keys and types are checked; ranges are not (call :func:`validate`).
    """
    return common.from_dict(Config, mapping, base)


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Apply ``section.key=value`` strings in order (later ones win).

    Values are parsed as YAML (``0.02``, ``false``, ``1e-5``); string fields
    keep the raw text.  Keys and types are checked; ranges are not.
    """
    return common.with_overrides(config, overrides)


def load_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> Config:
    """Defaults, then the YAML file at ``path``, then ``overrides``; validated."""
    return common.load(Config, path, overrides, validate)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


_RANGES: list[Range] = [
    ("model.lora_rank", lambda v: 0 <= v <= 512, "in [0, 512] (0 = full fine-tuning; vLLM serves ranks up to 512)"),
    ("model.lora_alpha", lambda v: v > 0, "> 0"),
    ("model.lora_dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("rollout.num_generators", lambda v: v >= 1, ">= 1"),
    ("rollout.samples_per_prompt", lambda v: v >= 1, ">= 1"),
    ("rollout.temperature", lambda v: v > 0, "> 0 (greedy decoding for the baseline is added separately)"),
    ("rollout.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("rollout.max_new_tokens", lambda v: v >= 1, ">= 1"),
    ("rollout.max_prompt_tokens", lambda v: v >= 1, ">= 1"),
    ("rollout.kv_cache_gib", lambda v: v >= 0, ">= 0"),
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
    ("learner.num_workers", lambda v: v >= 1, ">= 1"),
    ("algo.kl_coef", lambda v: v >= 0, ">= 0"),
    ("algo.score_clip", lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    ("algo.clip_eps", lambda v: v > 0, "> 0"),
    ("algo.importance_cap", lambda v: v > 0, "> 0"),
    ("algo.value_clip", lambda v: v > 0, "> 0"),
    ("algo.epochs", lambda v: v >= 1, ">= 1"),
    ("algo.gamma", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("algo.lam", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("run.steps", lambda v: v >= 0, ">= 0"),
    ("run.prompts_per_step", lambda v: v >= 1, ">= 1"),
    ("run.eval_every", lambda v: v >= 0, ">= 0 (0 = only before and after training)"),
    ("run.eval_prompts", lambda v: v >= 1, ">= 1"),
    ("run.eval_samples", lambda v: v >= 0, ">= 0 (0 = greedy only)"),
    ("run.sample_prompts", lambda v: v >= 0, ">= 0 (0 = none)"),
    ("run.save_every", lambda v: v >= 0, ">= 0 (0 = only at the end)"),
    ("run.keep_checkpoints", lambda v: v >= 0, ">= 0 (0 = keep all)"),
    ("run.step_retries", lambda v: v >= 0, ">= 0"),
    ("run.max_learner_restarts", lambda v: v >= 0, ">= 0"),
    ("cluster.num_cpus", lambda v: v >= 0, ">= 0 (0 = all)"),
    ("cluster.sync_timeout_s", lambda v: v > 0, "> 0"),
    ("cluster.max_actor_restarts", lambda v: v >= 0, ">= 0"),
    ("cluster.colocated_gpu_share", lambda v: 0 < v < 1, "in (0, 1)"),
    ("cluster.placement_timeout_s", lambda v: v > 0, "> 0"),
    ("cluster.autoscale_timeout_s", lambda v: v > 0, "> 0"),
    ("cluster.restart_timeout_s", lambda v: v > 0, "> 0"),
    ("cluster.sync_bucket_mb", lambda v: v >= 1, ">= 1"),
    ("cluster.threads_per_actor", lambda v: v >= 0, ">= 0 (0 = all cores)"),
]

_NON_EMPTY = ("model.path", "run.dataset", "run.prompt_key", "run.output_dir")


def resolve_overlap(cfg: Config, device: str, cores: int) -> tuple[bool, str]:
    """``rollout.overlap`` resolved for a learner on ``device``: (on?, why, in words).

    auto is on only where sampling and learning can run at once: on GPUs (each generator and each
    learner rank holds a device of its own), or on CPU when ``cluster.threads_per_actor`` gives
    every generator and learner rank cores of its own within the node's ``cores``. With the default
    threads (every actor uses every core) the phases would share the cores: no gain, and it
    measured slower (docs/PERFORMANCE.md). It is also off for what overlap cannot correct (PPO's
    ratio, the KL in the loss)."""
    from remax_ray.algo import ESTIMATORS

    ro, al, cl = cfg.rollout, cfg.algo, cfg.cluster
    if ro.overlap != common.AUTO:
        return bool(ro.overlap), f"rollout.overlap={str(ro.overlap).lower()}"
    if ESTIMATORS[al.estimator].uses_ratio:
        return False, f"rollout.overlap=auto: off, {al.estimator}'s ratio needs samples of the learner's own policy"
    if al.kl_placement == "loss" and al.kl_coef > 0:
        return False, "rollout.overlap=auto: off, the KL in the loss would be taken on stale samples"
    if device == "cuda":
        return True, "rollout.overlap=auto: on, the generators and the learner hold GPUs of their own"
    cores = max(cores, 1)
    actors = ro.num_generators + cfg.learner.num_workers
    if cl.threads_per_actor and cl.threads_per_actor * actors <= cores:
        return True, (f"rollout.overlap=auto: on, {actors} actors x {cl.threads_per_actor} threads "
                      f"(cluster.threads_per_actor) fit the node's {cores} cores")
    used = (f"{cl.threads_per_actor} threads each" if cl.threads_per_actor
            else "every core (cluster.threads_per_actor=0)")
    return False, (f"rollout.overlap=auto: off, the generators and the learner would share the node's "
                   f"{cores} cores ({actors} actors, {used}): they would take turns anyway")


def check_for_device(cfg: Config, device: str) -> None:
    """The rules that need the learner's device (``cluster.device`` resolved): ConfigError before
    any actor starts."""
    if cfg.learner.fsdp_offload and device != "cuda":
        raise ConfigError(
            "learner.fsdp_offload=true moves FSDP2's shards from GPU memory to CPU memory between "
            f"uses, but the learner runs on {device}: its shards are in CPU memory already. Set "
            "learner.fsdp_offload=false (learner.strategy=fsdp alone shards the state across ranks)")


def _algo(name: str) -> Callable[[], Sequence[str]]:
    """A registry of remax_ray.algo by name, imported when a config is checked (algo imports torch)."""
    def names() -> Sequence[str]:
        import remax_ray.algo as algo

        return tuple(getattr(algo, name))
    return names


_CHOICES: tuple[checks.Choice, ...] = (
    ("model.dtype", lambda: MODEL_DTYPES, "dtype", {"bf16": "bfloat16", "fp32": "float32"}),
    ("cluster.sync_transport", lambda: SYNC_TRANSPORTS, "transport", None),
    ("cluster.device", lambda: LEARNER_DEVICES, "device", {"gpu": "cuda"}),
    ("cluster.placement", lambda: PLACEMENT_MODES, "placement mode",
     {"colocate": "colocated", "disaggregate": "disaggregated", "separate": "disaggregated"}),
    ("cluster.placement_strategy", lambda: PLACEMENT_STRATEGIES, "strategy",
     {s.lower(): s for s in PLACEMENT_STRATEGIES}),
    ("rollout.long_prompts", lambda: LONG_PROMPT_POLICIES, "policy",
     {"truncation": "truncate", "drop": "skip", "raise": "error"}),
    ("reward.on_invalid", lambda: INVALID_REWARD_POLICIES, "policy", {"raise": "error", "drop": "skip"}),
    ("reward.kind", lambda: tuple(REWARD_KINDS), "reward kind", None),
    ("learner.strategy", lambda: LEARNER_STRATEGIES, "strategy", {"fsdp2": "fsdp"}),
    ("algo.estimator", _algo("ESTIMATORS"), "estimator", None),
    ("algo.kl_estimator", _algo("KL_ESTIMATORS"), "KL estimator", None),
    ("algo.kl_placement", _algo("KL_PLACEMENTS"), "KL placement", None),
    ("algo.loss_agg", _algo("AGG_MODES"), "loss aggregation", None),
)
"""Every key with a fixed set of values, next to its choices: one table, like ``_RANGES``."""


def validate(config: Config) -> None:
    """Check value ranges and cross-field rules; raise :class:`ConfigError` on the first problem."""
    if not isinstance(config, Config):
        raise ConfigError(f"expected a Config, got {type(config).__name__}")
    checks.check_types(config)
    checks.check_non_empty(config, _NON_EMPTY)
    checks.check_ranges(config, _RANGES)

    m, ro, rw, ln, al, run, cl = (
        config.model, config.rollout, config.reward, config.learner,
        config.algo, config.run, config.cluster,
    )

    checks.check_choices(config, _CHOICES)
    if ro.top_p < 1:
        # vLLM would sample from the renormalised nucleus while the learner's log-probs (and the KL)
        # come from the full softmax: the samples would not come from the policy being trained.
        raise ConfigError(
            f"rollout.top_p={ro.top_p:g}: must be 1.0. The learner computes log-probs with the full "
            "softmax, so sampling from a top-p nucleus would make training off-policy (the sampled "
            "responses would not come from the policy whose gradient is taken)"
        )

    # Reward.
    REWARD_KINDS[rw.kind].check(rw)  # the keys this kind reads (reward.function, reward.model_path)
    checks.check_template("reward.template", rw.template)

    if m.lora_rank:
        _check_lora(config)
    if ln.fsdp_offload and ln.strategy != "fsdp":
        raise ConfigError("learner.fsdp_offload needs learner.strategy=fsdp (ddp keeps whole replicas)")

    # Batch shape.
    if run.prompts_per_step < ln.num_workers:
        raise ConfigError(
            f"run.prompts_per_step ({run.prompts_per_step}) must be >= learner.num_workers "
            f"({ln.num_workers}): the learner ranks split a step's batch by prompt")
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

    from remax_ray.algo import ESTIMATORS

    spec = ESTIMATORS[al.estimator]
    if ro.samples_per_prompt < spec.min_samples:
        raise ConfigError(
            f"algo.estimator: {al.estimator} needs rollout.samples_per_prompt >= "
            f"{spec.min_samples} (got {ro.samples_per_prompt})"
        )
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
    if ro.overlap is True and al.kl_placement == "loss" and al.kl_coef > 0:
        # The KL-in-loss gradient is an expectation under the learner's policy (see algo/kl.py); the
        # overlapped batch was sampled by the policy one update behind, and the importance weights
        # correct only the reward term. KL in the reward is inside the weighted returns.
        raise ConfigError(
            f"rollout.overlap=true with algo.kl_placement=loss (algo.kl_coef={al.kl_coef:g}): the "
            "KL-in-loss gradient would be taken on samples of the policy one update behind, "
            "uncorrected; use algo.kl_placement=reward (its penalty is importance-weighted with the "
            "reward) or rollout.overlap=false")
    if ro.overlap is True and spec.uses_ratio:
        raise ConfigError(
            f"rollout.overlap supports the on-policy estimators ({on_policy_names()}), not "
            f"algo.estimator={al.estimator}: its clipped ratio is taken against the learner's own old "
            "policy and would not correct for the generators' one-step lag")
    if not spec.uses_ratio and (al.epochs > 1 or mini < batch):
        raise ConfigError(
            f"algo.estimator={al.estimator} is on-policy: it needs algo.epochs=1 and one optimizer "
            f"step per batch (learner.mini_batch_size=0 or {batch}); only {ratio_names()} corrects for "
            "a policy that moved between optimizer steps"
        )


def _check_lora(config: Config) -> None:
    """The rules of a LoRA run (``model.lora.rank`` > 0)."""
    m = config.model
    if m.reference_path and m.reference_path != m.path:
        # The reference is the policy's own frozen base with the adapter switched off.
        raise ConfigError(
            f"model.reference_path={m.reference_path!r} with model.lora.rank={m.lora_rank}: a LoRA run's KL "
            "reference is model.path with the adapter off (no second copy of the weights); leave "
            "model.reference_path empty")
    targets = [t.strip() for t in m.lora_target_modules.split(",")]
    if not all(targets) or ("all-linear" in targets and len(targets) > 1):
        raise ConfigError(f"model.lora.target_modules={m.lora_target_modules!r}: all-linear or "
                          "comma-separated module names (q_proj,v_proj)")
