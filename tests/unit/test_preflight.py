"""Tests for remax_ray.driver.preflight.preflight: every user-input check, before any actor starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Imported here so that their (seconds of) import time is spent at collection, not inside a test.
import tokenizers  # noqa: F401
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: F401

from remax_ray.config import ConfigError, load_config
from remax_ray.data.prompts import PromptSplits
from remax_ray.driver.preflight import preflight
from remax_ray.driver.trainer import resolve_transport


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    lines = [json.dumps({"prompt": f"review number {i} was"}) for i in range(10)] + ["broken"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("setting, device, expected", [
    ("auto", "cpu", "cpu"), ("auto", "cuda", "nccl"), ("cpu", "cuda", "cpu"),
    ("gloo", "cpu", "gloo"), ("nccl", "cuda", "nccl"),
])
def test_transport_resolution(setting: str, device: str, expected: str) -> None:
    cfg = load_config(None, [f"cluster.sync_transport={setting}"])
    assert resolve_transport(cfg, device) == expected


def test_nccl_transport_needs_a_cuda_learner() -> None:
    cfg = load_config(None, ["cluster.sync_transport=nccl"])
    with pytest.raises(ConfigError, match="needs the learner on CUDA"):
        resolve_transport(cfg, "cpu")


def test_folder_without_config_json(tmp_path: Path, prompts: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    cfg = load_config(None, [f"model.path={empty}", f"run.dataset={prompts}"])
    with pytest.raises(ConfigError, match="no config.json") as exc:
        preflight(cfg)
    assert str(empty) in str(exc.value)


def test_missing_model_folder(tmp_path: Path, prompts: Path) -> None:
    cfg = load_config(None, [f"model.path={tmp_path / 'absent'}", f"run.dataset={prompts}"])
    with pytest.raises(ConfigError, match="^model.path: model folder .*absent does not exist$"):
        preflight(cfg)


def test_builtin_model_not_prepared(tmp_path: Path, prompts: Path, monkeypatch) -> None:
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path / "home"))
    cfg = load_config(None, [f"run.dataset={prompts}"])  # model.path defaults to the builtin
    assert cfg.model.path == "builtin:smollm2-135m-instruct"
    with pytest.raises(FileNotFoundError, match="remax-ray assets") as exc:
        preflight(cfg)
    assert str(tmp_path / "home") in str(exc.value)


def test_builtin_dataset_not_prepared(tmp_path: Path, model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path / "home"))
    cfg = load_config(None, [f"model.path={model_dir}"])  # run.dataset defaults to the builtin
    with pytest.raises(FileNotFoundError, match="remax-ray assets"):
        preflight(cfg)


def test_valid_model_and_prompts(model_dir: Path, prompts: Path) -> None:
    cfg = load_config(None, [f"model.path={model_dir}", f"run.dataset={prompts}",
                             "run.eval_prompts=3", "run.seed=1", "reward.kind=vader"])
    path, splits = preflight(cfg)
    assert path == str(model_dir)
    assert isinstance(splits, PromptSplits)
    # 10 good lines + 1 broken: 3 held out, 10 - 3 = 7 for training, 1 skipped.
    assert (len(splits.train), len(splits.eval), splits.skipped) == (7, 3, 1)
    assert not set(splits.train) & set(splits.eval)
    assert preflight(cfg) == (path, splits)  # deterministic


def test_too_few_prompts_for_eval(model_dir: Path, prompts: Path) -> None:
    cfg = load_config(None, [f"model.path={model_dir}", f"run.dataset={prompts}", "run.eval_prompts=10"])
    with pytest.raises(ValueError, match=r"got 0 and 10 \(1 lines skipped\)"):
        preflight(cfg)


def test_builtin_reward_model_not_prepared(tmp_path: Path, prompts: Path, model_dir: Path,
                                           monkeypatch) -> None:
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path / "home"))
    cfg = load_config(None, [f"model.path={model_dir}", f"run.dataset={prompts}", "run.eval_prompts=3"])
    assert cfg.reward.model_path == "builtin:sentiment-rm"
    with pytest.raises(FileNotFoundError, match="sentiment-rm is not prepared yet"):
        preflight(cfg)
