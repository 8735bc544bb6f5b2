"""Typed configuration for remax-ray.

A configuration is a tree of frozen dataclasses, one per section, collected in
a root dataclass.  Every field carries its help text in ``metadata["help"]``;
:func:`describe_fields` exposes it for ``--help`` and :func:`to_yaml` writes it
as comments, which is how ``remax_ray/config/default.yaml`` is produced
(``python -m remax_ray.config``).

- :mod:`.base`: the generic machinery (YAML, overrides, types, did-you-mean errors);
- :mod:`.generation`, :mod:`.optim`, :mod:`.runtime`: the training sections;
- :mod:`.train`: the training root :class:`Config`, :func:`load_config`, :func:`validate`;
- :mod:`.rm`: the reward-model training root :class:`RewardModelConfig`;
- :mod:`.tasks`: the named built-in tasks (``remax-ray train --task``), each a list of overrides;
- :mod:`.reward_kinds`: the reward kinds (``REWARD_KINDS``), what config and driver know of each.

Only the standard library, PyYAML and ``algo`` (the estimator registry, for validation) are
imported here; every other package may import ``config``.

Also :mod:`.checks` (types, ranges, choices), :mod:`.estimators` (help texts from the estimator
registry) and ``__main__`` (prints default.yaml).
"""

from remax_ray.config.base import ConfigError
from remax_ray.config.generation import (
    INVALID_REWARD_POLICIES,
    LONG_PROMPT_POLICIES,
    MODEL_DTYPES,
    ModelConfig,
    RewardConfig,
    RolloutConfig,
    resolve_score_response_only,
)
from remax_ray.config.optim import AlgoConfig, LearnerConfig
from remax_ray.config.reward_kinds import REWARD_KINDS, RewardKind, reward_kind
from remax_ray.config.rm import (
    RewardModelConfig,
    RMDataConfig,
    RMModelConfig,
    RMTrainConfig,
    describe_rm_fields,
    load_rm_config,
    rm_config_keys,
    rm_to_yaml,
    validate_rm,
)
from remax_ray.config.runtime import LEARNER_DEVICES, SYNC_TRANSPORTS, ClusterConfig, RunConfig
from remax_ray.config.tasks import TASK_KEYS, TASKS, Task, task_overrides
from remax_ray.config.train import (
    DEFAULT_CONFIG_PATH,
    SECTIONS,
    Config,
    apply_overrides,
    config_from_dict,
    config_keys,
    describe_fields,
    dump_yaml,
    load_config,
    check_for_device,
    resolve_overlap,
    to_yaml,
    validate,
)

__all__ = [
    "AlgoConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DEFAULT_CONFIG_PATH",
    "INVALID_REWARD_POLICIES",
    "LONG_PROMPT_POLICIES",
    "LEARNER_DEVICES",
    "LearnerConfig",
    "MODEL_DTYPES",
    "ModelConfig",
    "REWARD_KINDS",
    "RMDataConfig",
    "RMModelConfig",
    "RMTrainConfig",
    "RewardConfig",
    "RewardKind",
    "RewardModelConfig",
    "RolloutConfig",
    "check_for_device",
    "resolve_overlap",
    "RunConfig",
    "SECTIONS",
    "SYNC_TRANSPORTS",
    "TASKS",
    "TASK_KEYS",
    "Task",
    "apply_overrides",
    "config_from_dict",
    "config_keys",
    "describe_fields",
    "describe_rm_fields",
    "dump_yaml",
    "load_config",
    "load_rm_config",
    "rm_config_keys",
    "resolve_score_response_only",
    "reward_kind",
    "rm_to_yaml",
    "task_overrides",
    "to_yaml",
    "validate",
    "validate_rm",
]
