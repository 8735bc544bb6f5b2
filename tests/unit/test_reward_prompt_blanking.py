"""reward.score_response_only: auto blanks the prompt only for builtin:sentiment-rm and VADER
(builtin:steered-rm reads the prompt: its instruction decides the reward).

A user's own reward function or reward model (given by path) sees the real prompt unless the user
sets reward.score_response_only=true; an explicit true/false always wins. The resolution lives in
one place (:func:`remax_ray.config.resolve_score_response_only`), read by the scorer, the reward
actor's arguments and the start-up summary.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from remax_ray.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    RewardConfig,
    load_config,
    resolve_score_response_only,
)
from remax_ray.reward.scorer import RewardScorer, reward_kwargs

CHAR_E = "remax_ray.reward.functions:char_share_e"


def _user_overrides(*extra: str) -> list[str]:
    # The issue's command: the default config plus only these three overrides.
    return ["run.dataset=prompts.jsonl", "reward.kind=function", "reward.function=length_reward:reward",
            *extra]


# --------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("reward, blanked, words", [
    (RewardConfig(), True, "builtin:sentiment-rm scores the continuation alone"),
    (RewardConfig(kind="vader"), True, "vader, a lexicon on one text, scores the response alone"),
    (RewardConfig(kind="function", function=CHAR_E), False, f"reward function {CHAR_E!r} reads the prompt"),
    (RewardConfig(kind="hf", model_path="runs/my-rm"), False, "reward model 'runs/my-rm' reads the prompt"),
    (RewardConfig(kind="hf", model_path="builtin:steered-rm"), False,
     "reward model 'builtin:steered-rm' reads the prompt"),
])
def test_auto_follows_the_reward(reward: RewardConfig, blanked: bool, words: str) -> None:
    assert reward.score_response_only == "auto"
    got, why = resolve_score_response_only(reward)
    assert got is blanked and reward.blanks_prompt is blanked
    assert why == f"{words}; reward.score_response_only=auto"


@pytest.mark.parametrize("reward", [
    RewardConfig(), RewardConfig(kind="vader"), RewardConfig(kind="function", function=CHAR_E),
    RewardConfig(kind="hf", model_path="runs/my-rm"), RewardConfig(kind="hf", model_path="builtin:steered-rm"),
])
@pytest.mark.parametrize("setting", [True, False])
def test_an_explicit_setting_wins(reward: RewardConfig, setting: bool) -> None:
    cfg = dataclasses.replace(reward, score_response_only=setting)
    got, why = resolve_score_response_only(cfg)
    assert got is setting and cfg.blanks_prompt is setting
    assert why.endswith(f"; reward.score_response_only={str(setting).lower()}")


def test_the_builtin_prefix_is_read_from_the_configured_path_not_the_kind_alone() -> None:
    # A function reward ignores reward.model_path, even when it names the builtin model.
    assert not RewardConfig(kind="function", function=CHAR_E, model_path="builtin:sentiment-rm").blanks_prompt
    assert RewardConfig(kind="hf", model_path="builtin:sentiment-rm").blanks_prompt
    assert not RewardConfig(kind="hf", model_path="builtin:steered-rm").blanks_prompt  # not every builtin


def test_the_steered_task_gives_its_reward_model_the_prompt() -> None:
    from remax_ray.config import task_overrides

    for path in (None, DEFAULT_CONFIG_PATH):
        cfg = load_config(path, task_overrides("steered-sentiment"))
        assert cfg.reward.score_response_only == "auto" and cfg.reward.blanks_prompt is False


# --------------------------------------------------------------------------- the config files


def test_the_issue_command_gives_the_function_the_prompt() -> None:
    for path in (None, DEFAULT_CONFIG_PATH):  # the dataclass defaults and the embedded default.yaml
        cfg = load_config(path, _user_overrides())
        assert cfg.reward.score_response_only == "auto"
        assert cfg.reward.blanks_prompt is False


def test_the_default_run_still_blanks_for_its_builtin_reward_model() -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH, ["run.dataset=prompts.jsonl"])
    assert (cfg.reward.kind, cfg.reward.model_path) == ("hf", "builtin:sentiment-rm")
    assert cfg.reward.blanks_prompt is True


@pytest.mark.parametrize("raw, stored", [("auto", "auto"), ("true", True), ("false", False)])
def test_override_values(raw: str, stored: object) -> None:
    cfg = load_config(None, _user_overrides(f"reward.score_response_only={raw}"))
    assert cfg.reward.score_response_only == stored
    assert type(cfg.reward.score_response_only) is type(stored)
    assert cfg.reward.blanks_prompt is (stored is True)


@pytest.mark.parametrize("text, stored", [("true", True), ("false", False), ("auto", "auto")])
def test_yaml_values(tmp_path: Path, text: str, stored: object) -> None:
    path = tmp_path / "my.yaml"
    path.write_text(f"reward:\n  score_response_only: {text}\n")
    assert load_config(path).reward.score_response_only == stored


@pytest.mark.parametrize("raw, message", [
    ("atuo", "reward.score_response_only: expected true, false or auto, got 'atuo' (str); "
             "did you mean 'auto'?"),
    ("1", "reward.score_response_only: expected true, false or auto, got 1 (int)"),
    ("", "reward.score_response_only: expected true, false or auto, got None (NoneType)"),
])
def test_bad_values_name_the_key_and_the_choices(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, [f"reward.score_response_only={raw}"])
    assert str(exc.value) == message


def test_a_bad_value_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("reward:\n  score_response_only: response\n")
    with pytest.raises(ConfigError, match="^" + str(path) + ": reward.score_response_only: expected "
                                           "true, false or auto, got 'response' \\(str\\)$"):
        load_config(path)


def test_a_hand_built_config_with_a_bad_value_fails_validation() -> None:
    from remax_ray.config import Config, validate

    with pytest.raises(ConfigError, match="reward.score_response_only: expected true, false or auto"):
        validate(Config(reward=RewardConfig(score_response_only="yes")))


# --------------------------------------------------------------------------- the scorer


def test_reward_kwargs_give_a_function_the_real_prompt() -> None:
    seen: list[list[str]] = []

    scorer = RewardScorer(**reward_kwargs(RewardConfig(kind="function", function=CHAR_E)))
    assert scorer.score_response_only is False
    scorer.kind_scorer.fn = lambda prompts, responses: seen.append(list(prompts)) or [0.0] * len(responses)
    scorer.score(["Write one sentence of exactly 5 words about cats:"], ["Cats nap in warm sun."])
    assert seen == [["Write one sentence of exactly 5 words about cats:"]]


def test_reward_kwargs_blank_for_vader() -> None:
    scorer = RewardScorer(**reward_kwargs(RewardConfig(kind="vader", template="{prompt}|{response}")))
    assert scorer.score_response_only is True
    assert scorer.render(["a terrible opening"], ["a fine end"]) == ["|a fine end"]


# --------------------------------------------------------------------------- the start-up summary


def _startup_lines(caplog: pytest.LogCaptureFixture, cfg) -> list[str]:
    from remax_ray.driver.preflight import check_reward

    with caplog.at_level(logging.INFO, logger="remax_ray"):
        check_reward(cfg)
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("reward:")]


def test_startup_says_when_prompts_are_blanked(caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(None, ["reward.kind=vader"])
    assert _startup_lines(caplog, cfg) == [
        "reward: prompts blanked (vader, a lexicon on one text, scores the response alone; "
        "reward.score_response_only=auto)"]


def test_startup_names_an_explicit_setting(caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(None, ["reward.kind=function", f"reward.function={CHAR_E}",
                             "reward.score_response_only=true"])
    assert _startup_lines(caplog, cfg) == [
        f"reward: prompts blanked (reward function {CHAR_E!r}; reward.score_response_only=true)"]


def test_startup_is_silent_when_the_reward_sees_the_prompt(caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(None, ["reward.kind=function", f"reward.function={CHAR_E}"])
    assert _startup_lines(caplog, cfg) == []
