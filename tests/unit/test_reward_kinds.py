"""The reward-kind registries (issue 33): a kind is one entry of config's REWARD_KINDS (what config,
assets step and driver know) and one of reward's REWARD_SOURCES (how it scores), and every consumer
reads them, so a kind registered there is taken up with no further edit."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from remax_ray.config import (
    REWARD_KINDS,
    ConfigError,
    RewardConfig,
    RewardKind,
    describe_fields,
    load_config,
    resolve_score_response_only,
    reward_kind,
)
from remax_ray.driver import prepare
from remax_ray.driver.preflight import check_reward
from remax_ray.reward import REWARD_SOURCES, RewardScorer, RewardSource, reward_kwargs


def test_the_two_registries_name_the_same_kinds_in_the_same_order() -> None:
    # The same order too: config's "choices:" and the scorer's "must be one of" list them alike.
    assert list(REWARD_KINDS) == list(REWARD_SOURCES) == ["hf", "vader", "function"]


def test_an_unknown_kind_is_a_config_error_listing_the_kinds() -> None:
    with pytest.raises(ConfigError, match=r"^reward.kind: must be one of hf, vader, function \(got 'nope'\)$"):
        reward_kind("nope")
    with pytest.raises(ConfigError, match=r"^reward.kind: must be one of hf, vader, function \(got 'nope'\)$"):
        resolve_score_response_only(RewardConfig(kind="nope"))
    with pytest.raises(ConfigError, match=r"^reward.kind: must be one of hf, vader, function \(got 'nope'\)$"):
        RewardScorer("nope")


@pytest.mark.parametrize("kind, reads", [("hf", True), ("vader", False), ("function", False)])
def test_only_a_kind_that_reads_the_model_path_gets_its_builtin_prepared(
        kind: str, reads: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(prepare, "prepare_builtins_for", lambda *paths, log: asked.extend(paths))
    extra = ["reward.function=remax_ray.reward.functions:char_share_e"] if kind == "function" else []
    prepare.prepare_builtins_for_config(load_config(None, [f"reward.kind={kind}", *extra]))
    assert ("builtin:sentiment-rm" in asked) is reads


# --------------------------------------------------------------------------- a new kind


class _Length:
    """A stand-in reward model: the length of the rendered text, read from its (resolved) folder."""

    source = "length reward"

    def __init__(self, settings) -> None:
        self.model_path, self.render = settings.model_path, settings.render

    def __call__(self, prompts: list[str], responses: list[str], rows) -> list[float]:
        return [float(len(text)) for text in self.render(prompts, responses)]


class _OneTooMany(_Length):
    def __call__(self, prompts: list[str], responses: list[str], rows) -> list[float]:
        return [*super().__call__(prompts, responses, rows), 0.0]


def _needs_model_path(reward) -> None:
    if not reward.model_path.strip():
        raise ConfigError("reward.model_path: required when reward.kind=length")


@pytest.fixture
def length_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list:
    """``reward.kind=length`` registered in both tables and nowhere else; the preflight calls it saw.
    Its model path defaults to builtin:sentiment-rm, here a prepared folder under a temporary home."""
    (tmp_path / "sentiment-rm").mkdir()
    (tmp_path / "sentiment-rm" / "config.json").write_text("{}\n")
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path))
    checked: list = []
    monkeypatch.setitem(REWARD_KINDS, "length", RewardKind(
        "characters of the rendered text", describe=lambda reward: "length",
        response_only=lambda reward: "length counts the response alone", check=_needs_model_path,
        reads_model_path=True))
    monkeypatch.setitem(REWARD_SOURCES, "length", RewardSource(
        _Length, preflight=lambda cfg, columns: checked.append((cfg.reward.kind, columns))))
    return checked


def test_the_configuration_takes_a_registered_kind(length_kind: list) -> None:
    cfg = load_config(None, ["reward.kind=length"])
    assert cfg.reward.kind == "length"
    with pytest.raises(ConfigError, match="^reward.model_path: required when reward.kind=length$"):
        load_config(None, ["reward.kind=length", "reward.model_path= "])  # the kind's own check ran
    assert "length (characters of the rendered text)" in describe_fields()["reward.kind"]
    assert resolve_score_response_only(cfg.reward) == (
        True, "length counts the response alone; reward.score_response_only=auto")
    assert resolve_score_response_only(RewardConfig(kind="length", score_response_only=False)) == (
        False, "length; reward.score_response_only=false")


def test_the_driver_takes_a_registered_kind(length_kind: list, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(None, ["reward.kind=length"])
    with caplog.at_level(logging.INFO, logger="remax_ray"):
        check_reward(cfg, {"answer"})
    assert length_kind == [("length", {"answer"})]
    assert "reward: prompts blanked (length counts the response alone; reward.score_response_only=auto)" in [
        r.getMessage() for r in caplog.records]

    asked: list[str] = []
    monkeypatch.setattr(prepare, "prepare_builtins_for", lambda *paths, log: asked.extend(paths))
    prepare.prepare_builtins_for_config(cfg)
    assert "builtin:sentiment-rm" in asked  # reads_model_path: its builtin is prepared


def test_the_scorer_takes_a_registered_kind(length_kind: list, tmp_path: Path) -> None:
    kwargs = reward_kwargs(load_config(None, ["reward.kind=length"]).reward)
    assert kwargs["kind"] == "length"
    assert kwargs["model_path"] == str(tmp_path / "sentiment-rm")  # resolved on the driver
    assert kwargs["score_response_only"] is True
    scorer = RewardScorer(**kwargs)
    assert scorer.kind_scorer.model_path == str(tmp_path / "sentiment-rm")
    assert scorer.score(["a long prompt"], ["four"]) == [4.0]  # the prompt blanked, as auto said
    scorer.kind_scorer = _OneTooMany(scorer)  # the checks every kind shares apply to a new one
    with pytest.raises(ValueError, match="^length reward returned 2 rewards for 1 responses$"):
        scorer.score(["p"], ["r"])
