"""Tests for remax_ray.config: defaults, loading precedence, errors, round-trip."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from remax_ray.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    LearnerConfig,
    apply_overrides,
    config_from_dict,
    config_keys,
    describe_fields,
    dump_yaml,
    load_config,
    to_yaml,
    validate,
)

# The documented defaults; other modules rely on these names.
EXPECTED_DEFAULTS = {
    "model": {"path": "builtin:smollm2-135m-instruct", "reference_path": "", "dtype": "auto",
              "trust_remote_code": False, "allow_pickle_weights": False, "lora_rank": 0, "lora_alpha": 16.0,
              "lora_dropout": 0.0, "lora_target_modules": "all-linear", "lora_save_merged": False},
    "rollout": {
        "num_generators": 1,
        "samples_per_prompt": 1,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 24,
        "max_prompt_tokens": 64,
        "long_prompts": "truncate",
        "kv_cache_gib": 0.0,
        "gpu_memory_utilization": 0.3,
        "enforce_eager": True,
        "overlap": "auto",
        "num_cpus_per_generator": 1.0,
    },
    "reward": {
        "kind": "hf",
        "function": "",
        "model_path": "builtin:sentiment-rm",
        "template": "{prompt}{response}",
        "max_length": 256,
        "batch_size": 64,
        "score_response_only": "auto",
        "on_invalid": "error",
        "trust_remote_code": False,
    },
    "learner": {
        "lr": 5e-5,
        "weight_decay": 0.0,
        "beta1": 0.9,
        "beta2": 0.999,
        "warmup_steps": 0,
        "max_grad_norm": 1.0,
        "micro_batch_size": 8,
        "mini_batch_size": 0,
        "critic_lr": 1e-4,
        "gradient_checkpointing": False,
        "num_cpus": 1.0,
        "num_workers": 1,
        "strategy": "ddp",
        "fsdp_offload": False,
    },
    "algo": {
        "estimator": "remax",
        "kl_coef": 0.02,
        "kl_estimator": "k1",
        "kl_placement": "reward",
        "loss_agg": "token-mean",
        "score_clip": 0.0,
        "clip_eps": 0.2,
        "importance_cap": 2.0,
        "value_clip": 0.2,
        "epochs": 1,
        "whiten_advantages": True,
        "gamma": 1.0,
        "lam": 0.95,
    },
    "run": {
        "steps": 24,
        "prompts_per_step": 16,
        "seed": 0,
        "dataset": "builtin:movie-reviews",
        "prompt_key": "prompt",
        "messages_key": "",
        "eval_every": 8,
        "eval_prompts": 32,
        "eval_samples": 1,
        "sample_prompts": 4,
        "save_every": 0,
        "output_dir": "runs/default",
        "keep_checkpoints": 3,
        "step_retries": 2,
        "max_learner_restarts": 2,
        "progress": True,
        "check_sync": True,
    },
    "cluster": {
        "address": "",
        "num_cpus": 0,
        "sync_transport": "auto",
        "sync_bucket_mb": 64,
        "sync_timeout_s": 120.0,
        "max_actor_restarts": 3,
        "restart_timeout_s": 600.0,
        "device": "auto",
        "placement": "disaggregated",
        "placement_strategy": "PACK",
        "colocated_gpu_share": 0.5,
        "placement_timeout_s": 120.0,
        "autoscale_timeout_s": 1800.0,
        "threads_per_actor": 0,
    },
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def _raises(message: str):
    return pytest.raises(ConfigError, match=re.escape(message))


# --------------------------------------------------------------------------- defaults


def test_defaults_match_documented_values_and_types():
    data = Config().to_dict()
    assert data == EXPECTED_DEFAULTS
    for section, values in EXPECTED_DEFAULTS.items():
        for key, value in values.items():
            assert type(data[section][key]) is type(value), f"{section}.{key}"


def test_defaults_load_and_validate():
    config = load_config()
    assert config == Config()
    assert config.validate() is config
    validate(config)


def test_sections_are_frozen():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.learner.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.run = None  # type: ignore[misc]


def test_config_keys_and_descriptions():
    keys = config_keys()
    assert keys == [f"{s}.{k}" for s, values in EXPECTED_DEFAULTS.items() for k in values]
    help_texts = describe_fields()
    assert list(help_texts) == keys
    assert all(text.strip() for text in help_texts.values())
    assert "0 disables clipping" in help_texts["learner.max_grad_norm"]


# --------------------------------------------------------------------------- loading


def test_yaml_then_overrides_precedence(tmp_path):
    path = _write(
        tmp_path,
        "algo:\n  kl_coef: 0.1\n  estimator: remax\nlearner:\n  lr: 3e-4\nrun:\n  steps: 7\n",
    )
    config = load_config(path, ["algo.kl_coef=0.02", "run.steps=3", "run.steps=4"])
    assert config.algo.kl_coef == 0.02  # override beats file
    assert config.run.steps == 4  # later override beats earlier
    assert config.learner.lr == 3e-4  # file beats default; 3e-4 (no dot) is a float
    assert config.rollout == Config().rollout  # untouched sections keep defaults
    assert load_config(str(path)).algo.kl_coef == 0.1


def test_empty_file_and_empty_section(tmp_path):
    assert load_config(_write(tmp_path, "")) == Config()
    assert load_config(_write(tmp_path, "algo:\n# nothing\n")) == Config()


def test_override_value_parsing():
    config = load_config(
        overrides=[
            "run.progress=false",
            "learner.lr=1e-5",
            "learner.max_grad_norm=2",  # int accepted for a float field
            "model.path=123",  # string fields keep the raw text
            "run.output_dir=true",
            "reward.template=Q: {prompt} A={response}",  # '=' in the value
            "cluster.address=",
        ]
    )
    assert config.run.progress is False
    assert config.learner.lr == 1e-5
    assert config.learner.max_grad_norm == 2.0 and type(config.learner.max_grad_norm) is float
    assert config.model.path == "123"
    assert config.run.output_dir == "true"
    assert config.reward.template == "Q: {prompt} A={response}"
    assert config.cluster.address == ""


def test_apply_overrides_and_config_from_dict_do_not_validate_ranges():
    config = apply_overrides(Config(), ["learner.lr=-1"])
    assert config.learner.lr == -1.0
    config = config_from_dict({"learner": {"lr": 0.5}}, base=config)
    assert config.learner.lr == 0.5
    with _raises("learner.lr: must be > 0"):
        validate(apply_overrides(Config(), ["learner.lr=0"]))


# --------------------------------------------------------------------------- key / type errors


def test_unknown_key_suggests_closest():
    with _raises("unknown key 'algo.kl_coeff'; did you mean 'algo.kl_coef'? valid keys: algo.estimator, "):
        load_config(overrides=["algo.kl_coeff=0.1"])


def test_unknown_key_suggests_key_in_other_section(tmp_path):
    with _raises("unknown key 'rollout.lr'; did you mean 'learner.lr'?"):
        load_config(overrides=["rollout.lr=0.1"])
    with _raises("unknown key 'run.zzz'; valid keys: run.steps"):
        load_config(_write(tmp_path, "run:\n  zzz: 1\n"))


def test_unknown_section_suggests_closest(tmp_path):
    with _raises("unknown section 'learnr'; did you mean 'learner'? valid sections: model, rollout"):
        load_config(_write(tmp_path, "learnr:\n  lr: 0.1\n"))
    with _raises("unknown section 'algoo'; did you mean 'algo'?"):
        load_config(overrides=["algoo.kl_coef=1"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("rollout:\n  samples_per_prompt: '2.5'\n", "rollout.samples_per_prompt: expected int, got '2.5' (str)"),
        ("rollout:\n  samples_per_prompt: 2.0\n", "rollout.samples_per_prompt: expected int, got 2.0 (float)"),
        ("rollout:\n  samples_per_prompt: true\n", "rollout.samples_per_prompt: expected int, got True (bool)"),
        ("learner:\n  lr: true\n", "learner.lr: expected float, got True (bool)"),
        ("learner:\n  lr: '1e-5'\n", "learner.lr: expected float, got '1e-5' (str)"),
        ("learner:\n  lr: .nan\n", "learner.lr: expected a finite float, got nan"),
        ("run:\n  progress: 1\n", "run.progress: expected bool, got 1 (int)"),
        ("run:\n  output_dir: 5\n", "run.output_dir: expected str, got 5 (int)"),
        ("model:\n  path: null\n", "model.path: expected str, got None (NoneType)"),
    ],
)
def test_wrong_type_in_file(tmp_path, text, message):
    with _raises(message):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    "override, message",
    [
        ("rollout.samples_per_prompt=2.5", "rollout.samples_per_prompt: expected int, got 2.5 (float)"),
        ("rollout.samples_per_prompt=abc", "rollout.samples_per_prompt: expected int, got 'abc' (str)"),
        ("run.progress=maybe", "run.progress: expected bool, got 'maybe' (str)"),
        ("algo.kl_coef=[", "algo.kl_coef: expected float, got '[' (str)"),
    ],
)
def test_wrong_type_in_override(override, message):
    with _raises(message):
        load_config(overrides=[override])


@pytest.mark.parametrize("override", ["algo.kl_coef", "kl_coef=1", "=1", "algo.=1"])
def test_malformed_override(override):
    with _raises("must look like section.key=value"):
        load_config(overrides=[override])


@pytest.mark.parametrize(
    "text, message",
    [
        ("- 1\n- 2\n", "configuration must be a mapping of sections, got list"),
        ("algo: 3\n", "section 'algo' must be a mapping of keys, got 3 (int)"),
        ("algo: [\n", "invalid YAML in"),
    ],
)
def test_malformed_file(tmp_path, text, message):
    with _raises(message):
        load_config(_write(tmp_path, text))


def test_missing_file(tmp_path):
    with _raises("cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_validate_checks_types_of_hand_built_config():
    config = Config(learner=LearnerConfig(micro_batch_size="8"))  # type: ignore[arg-type]
    with _raises("learner.micro_batch_size: expected int, got '8' (str)"):
        validate(config)


# --------------------------------------------------------------------------- round-trip and default.yaml


def test_round_trip(tmp_path):
    config = load_config(
        overrides=[
            "learner.lr=3.3e-7",
            "algo.kl_coef=0.1",
            "reward.template=Review: {prompt}\n{response}",
            "reward.function=x.y:z",
            "cluster.address=ray://head:10001",
            "run.output_dir=runs/a b: c",
            "model.path=true",
            "run.progress=false",
            "rollout.gpu_memory_utilization=0.123456789",
        ]
    )
    data = config.to_dict()
    assert isinstance(data, dict) and all(type(v) is dict for v in data.values())
    path = dump_yaml(config, tmp_path / "sub" / "config.yaml")
    assert load_config(path) == config
    assert yaml.safe_load(path.read_text()) == data


def test_default_yaml_matches_defaults():
    assert DEFAULT_CONFIG_PATH.is_file()
    text = DEFAULT_CONFIG_PATH.read_text()
    assert load_config(DEFAULT_CONFIG_PATH) == Config()
    raw = yaml.safe_load(text)
    assert raw == EXPECTED_DEFAULTS  # every key written out, with exactly the default value
    # The file is the generated, commented rendering (regenerate: python -m remax_ray.config).
    assert text == to_yaml(Config())


def test_default_yaml_comments_every_key():
    lines = DEFAULT_CONFIG_PATH.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  ") and not line.lstrip().startswith("#"):
            assert lines[i - 1].lstrip().startswith("#"), f"no comment above {line!r}"


# --------------------------------------------------------------------------- grouped keys (model.lora.*)


def test_a_group_is_set_by_dotted_key_and_by_nested_yaml(tmp_path):
    by_override = load_config(None, ["model.lora.rank=8", "model.lora.target_modules=q_proj,v_proj"])
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  lora:\n    rank: 8\n    target_modules: q_proj,v_proj\n")
    assert load_config(path) == by_override
    assert (by_override.model.lora_rank, by_override.model.lora_target_modules) == (8, "q_proj,v_proj")
    assert load_config(None, ["model.lora_rank=8", "model.lora_target_modules=q_proj,v_proj"]) == by_override
    with pytest.raises(ConfigError, match="model.lora_rnak"):
        load_config(None, ["model.lora.rnak=8"])


@pytest.mark.parametrize("override, message", [
    ("model.lora.rank=600", r"model.lora_rank.*\[0, 512\]"),
    ("model.lora.alpha=0", r"model.lora_alpha.*> 0"),
    ("model.lora.dropout=1.0", r"model.lora_dropout"),
    ("model.reference_path=/elsewhere", "the adapter off"),
    ("model.lora.target_modules=all-linear,q_proj", "all-linear or"),
])
def test_lora_settings_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["model.lora.rank=8", override])
