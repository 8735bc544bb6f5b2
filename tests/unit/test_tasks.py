"""Named built-in tasks (remax_ray.config.tasks) and ``remax-ray train --task``: each task is a valid
config, the default config is the ``sentiment`` task, and an unknown name fails before anything
starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from remax_ray.cli import main
from remax_ray.config import TASK_KEYS, TASKS, Config, ConfigError, load_config, task_overrides
from remax_ray.driver import prepare


def _set_keys(name: str) -> list[str]:
    return [item.partition("=")[0] for item in task_overrides(name)]


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_sets_the_same_keys_and_validates(name: str) -> None:
    assert _set_keys(name) == list(TASK_KEYS)
    cfg = load_config(None, task_overrides(name))  # validated
    assert cfg.run.dataset.startswith("builtin:")


def test_the_default_config_is_the_sentiment_task() -> None:
    assert load_config(None, task_overrides("sentiment")) == Config()


def test_the_steered_task_reads_the_prompt() -> None:
    cfg = load_config(None, task_overrides("steered-sentiment"))
    assert (cfg.run.dataset, cfg.reward.model_path) == ("builtin:steered-reviews", "builtin:steered-rm")
    assert cfg.reward.blanks_prompt is False
    assert load_config(None, task_overrides("sentiment")).reward.blanks_prompt is True


def test_the_arithmetic_task_is_the_readme_command() -> None:
    cfg = load_config(None, task_overrides("arithmetic"))
    assert (cfg.run.messages_key, cfg.reward.kind) == ("messages", "function")
    assert cfg.reward.function == "remax_ray.reward.functions:exact_match"


def test_an_unknown_task_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="^unknown task 'steered_sentiment'; did you mean 'steered-sentiment'\\? "
                                          "known tasks: sentiment, steered-sentiment, arithmetic$"):
        task_overrides("steered_sentiment")
    with pytest.raises(ConfigError, match="^unknown task 'qa'; known tasks: "):
        task_overrides("qa")


class _Started(Exception):
    """Raised where the run would start preparing assets: the config reached that far."""


@pytest.fixture
def stop_before_assets(monkeypatch: pytest.MonkeyPatch) -> list:
    configs: list = []

    def stop(cfg, log=print):
        configs.append(cfg)
        raise _Started

    monkeypatch.setattr(prepare, "prepare_builtins_for_config", stop)
    return configs


def test_cli_unknown_task_is_a_configuration_error(stop_before_assets: list,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--task", "steered-sentimnet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("remax-ray: configuration error: unknown task 'steered-sentimnet'; "
                          "did you mean 'steered-sentiment'?")
    assert stop_before_assets == []  # nothing was prepared, nothing started


def test_cli_task_sits_over_the_file_and_under_the_overrides(tmp_path: Path, stop_before_assets: list) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("run:\n  dataset: my.jsonl\n  steps: 3\nreward:\n  kind: vader\n")
    with pytest.raises(_Started):
        main(["train", "--config", str(path), "--task", "steered-sentiment", "reward.kind=vader"])
    cfg = stop_before_assets[0]
    assert cfg.run.dataset == "builtin:steered-reviews"  # the task over the file
    assert cfg.run.steps == 3  # what the task does not set stays the file's
    assert cfg.reward.kind == "vader"  # the command line's own override over the task
