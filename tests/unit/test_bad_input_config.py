"""Bad-input matrix, config rows: an unknown key, a wrong type, an out-of-range value and an
off-policy setting (rollout.top_p < 1) each give one ConfigError naming the key, from load_config,
before anything else runs. (tests/unit/test_config.py and test_config_ranges.py cover every key's
type and range rule; these are the matrix's rows, from a file and from overrides.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from remax_ray.config import ConfigError, load_config


def _raises(message: str):
    return pytest.raises(ConfigError, match=re.escape(message))


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my.yaml"
    path.write_text(text)
    return path


def test_unknown_key_in_a_file_names_the_file_and_suggests(tmp_path: Path) -> None:
    path = _file(tmp_path, "rollout:\n  long_prompt: skip\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}: unknown key 'rollout.long_prompt'; did you mean "
                                     "'rollout.long_prompts'? valid keys: rollout.num_generators, ")


def test_unknown_key_in_an_override_suggests_the_other_section() -> None:
    with _raises("unknown key 'model.on_invalid'; did you mean 'reward.on_invalid'?"):
        load_config(overrides=["model.on_invalid=skip"])


@pytest.mark.parametrize("override, message", [
    ("model.allow_pickle_weights=maybe", "model.allow_pickle_weights: expected bool, got 'maybe' (str)"),
    ("model.trust_remote_code=1", "model.trust_remote_code: expected bool, got 1 (int)"),
    ("rollout.max_prompt_tokens=64.5", "rollout.max_prompt_tokens: expected int, got 64.5 (float)"),
    ("rollout.top_p=high", "rollout.top_p: expected float, got 'high' (str)"),
])
def test_wrong_type(override: str, message: str) -> None:
    with _raises(message):
        load_config(overrides=[override])


def test_wrong_type_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = _file(tmp_path, "reward:\n  on_invalid: false\n")
    with _raises(f"{path}: reward.on_invalid: expected str, got False (bool)"):
        load_config(path)


@pytest.mark.parametrize("override, message", [
    ("rollout.max_prompt_tokens=0", "rollout.max_prompt_tokens: must be >= 1 (got 0)"),
    ("rollout.top_p=0", "rollout.top_p: must be in (0, 1] (got 0.0)"),
    ("rollout.top_p=1.5", "rollout.top_p: must be in (0, 1] (got 1.5)"),
    ("rollout.long_prompts=truncation", "rollout.long_prompts: unknown policy 'truncation'; did you mean "
                                         "'truncate'? choices: truncate, skip, error"),
    ("rollout.long_prompts=drop", "rollout.long_prompts: unknown policy 'drop'; did you mean 'skip'?"),
    ("reward.on_invalid=skp", "reward.on_invalid: unknown policy 'skp'; did you mean 'skip'? "
                              "choices: error, skip"),
])
def test_out_of_range(override: str, message: str) -> None:
    with _raises(message):
        load_config(overrides=[override])


@pytest.mark.parametrize("top_p", ["0.9", "0.999", "1e-3"])
def test_top_p_below_one_is_refused_as_off_policy(top_p: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=[f"rollout.top_p={top_p}"])
    message = str(exc.value)
    assert message.startswith(f"rollout.top_p={float(top_p):g}: must be 1.0.")
    assert "full softmax" in message and "off-policy" in message


def test_top_p_below_one_in_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^rollout.top_p=0.95: must be 1.0. The learner computes"):
        load_config(_file(tmp_path, "rollout:\n  top_p: 0.95\n"))


def test_top_p_one_and_new_defaults() -> None:
    cfg = load_config(overrides=["rollout.top_p=1"])
    assert cfg.rollout.top_p == 1.0
    assert (cfg.rollout.long_prompts, cfg.reward.on_invalid) == ("truncate", "error")
    assert (cfg.model.allow_pickle_weights, cfg.model.trust_remote_code, cfg.reward.trust_remote_code) == (
        False, False, False)
    for policy in ("truncate", "skip", "error"):
        assert load_config(overrides=[f"rollout.long_prompts={policy}"]).rollout.long_prompts == policy
    assert load_config(overrides=["reward.on_invalid=skip"]).reward.on_invalid == "skip"


def test_fsdp_offload_is_refused_for_a_cpu_learner_and_gets_gloo_beside_nccl_on_cuda() -> None:
    """learner.fsdp_offload moves shards from GPU to CPU memory: meaningless on a CPU learner (and
    torch's default policy would pin its memory), so refused there before any actor starts. On
    CUDA the offloaded shards are CPU tensors in every gather, which nccl cannot take."""
    import torch

    from remax_ray.config import check_for_device
    from remax_ray.learner.dist import backend_for
    from remax_ray.learner.parallel import wrap

    cfg = load_config(overrides=["learner.num_workers=2", "learner.strategy=fsdp", "learner.fsdp_offload=true"])
    with pytest.raises(ConfigError, match="learner.fsdp_offload=true .* the learner runs on cpu"):
        check_for_device(cfg, "cpu")
    check_for_device(cfg, "cuda")
    check_for_device(load_config(overrides=["learner.num_workers=2", "learner.strategy=fsdp"]), "cpu")
    assert backend_for(torch.device("cuda"), cpu_tensors=True) == "cpu:gloo,cuda:nccl"
    assert backend_for(torch.device("cuda")) == "nccl" and backend_for(torch.device("cpu"), True) == "gloo"
    with pytest.raises(ValueError, match="needs a CUDA learner"):
        wrap(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), "fsdp", torch.device("cpu"), trainable=True, offload=True)
