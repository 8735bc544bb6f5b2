"""Bad-input matrix, reward rows: a function that fails to import (preflight, before any actor),
raises, returns the wrong length, or returns NaN/inf (an error naming the prompt, or with
reward.on_invalid=skip a logged NaN that drop_invalid removes and counts)."""

from __future__ import annotations

import logging
import math
import sys
import types
from pathlib import Path

import pytest

from remax_ray.config import ConfigError, RewardConfig, load_config
from remax_ray.data.rollouts import Completion, PromptRollout
from remax_ray.driver.preflight import preflight
from remax_ray.reward import RewardScorer, reward_kwargs
from remax_ray.rollout.validity import drop_invalid, is_valid

NAN, INF = float("nan"), float("inf")


def _module(monkeypatch: pytest.MonkeyPatch, **attrs: object) -> str:
    module = types.ModuleType("bad_input_rewards")
    for name, value in attrs.items():
        setattr(module, name, value)
    monkeypatch.setitem(sys.modules, "bad_input_rewards", module)
    return "bad_input_rewards"


def _preflight_function(model_dir: Path, prompts: Path, ref: str):
    return preflight(load_config(None, [f"model.path={model_dir}", f"run.dataset={prompts}",
                                        "run.eval_prompts=2", "reward.kind=function",
                                        f"reward.function={ref}"]))


# ----------------------------------------------------------------------- import, in preflight


def test_missing_reward_module_fails_in_preflight(model_dir: Path, prompts: Path) -> None:
    with pytest.raises(ConfigError, match="^reward.function: cannot import module 'no_such_rewards_q9'"):
        _preflight_function(model_dir, prompts, "no_such_rewards_q9:score")


def test_missing_reward_attribute_fails_in_preflight(model_dir: Path, prompts: Path) -> None:
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        _preflight_function(model_dir, prompts, "remax_ray.reward.functions:nope")


@pytest.mark.parametrize("source, error", [
    ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
    ("import no_such_dependency_q9\n", "ModuleNotFoundError: No module named 'no_such_dependency_q9'"),
    ("def score(prompts, responses)\n", "SyntaxError: "),
])
def test_reward_module_that_fails_to_import(model_dir: Path, prompts: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, source: str, error: str) -> None:
    name = f"broken_rewards_q9_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as exc:
        _preflight_function(model_dir, prompts, f"{name}:score")
    assert str(exc.value).startswith(f"reward.function: importing '{name}:score' failed: {error}")


def test_importable_reward_function_passes_preflight(model_dir: Path, prompts: Path) -> None:
    path, splits = _preflight_function(model_dir, prompts, "remax_ray.reward.functions:char_share_e")
    assert path == str(model_dir) and len(splits.eval) == 2


def test_reward_function_taking_a_column_the_dataset_lacks(model_dir: Path, prompts: Path) -> None:
    # exact_match takes the column `answer`; the six-prompt dataset has no column besides the prompt.
    with pytest.raises(ConfigError) as exc:
        _preflight_function(model_dir, prompts, "remax_ray.reward.functions:exact_match")
    assert str(exc.value).startswith(
        "reward.function: 'remax_ray.reward.functions:exact_match' takes the dataset column(s) 'answer', "
        f"which no row of run.dataset ({prompts}) has (its columns: none besides the prompt)")


def test_reward_function_with_an_optional_column_passes_preflight(model_dir: Path, prompts: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _module(monkeypatch, score=lambda prompts, responses, answer=None: [0.0] * len(responses))
    _preflight_function(model_dir, prompts, f"{ref}:score")


# ----------------------------------------------------------------------- scoring


def test_reward_function_that_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(prompts, responses):
        raise KeyError("label")

    ref = _module(monkeypatch, broken=broken) + ":broken"
    with pytest.raises(RuntimeError) as exc:
        RewardScorer("function", function=ref).score(["p"], ["r"])
    assert str(exc.value) == (f"reward function {ref!r} (reward.function) raised KeyError: 'label' "
                              "while scoring 1 responses")
    assert isinstance(exc.value.__cause__, KeyError)


def test_reward_function_wrong_length(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _module(monkeypatch, short=lambda p, r: [0.0] * (len(r) - 1)) + ":short"
    with pytest.raises(ValueError, match=rf"^reward function '{ref}' returned 2 rewards for 3 responses$"):
        RewardScorer("function", function=ref).score(["a", "b", "c"], ["x", "y", "z"])
    # Wrong length is a bug, never a skip.
    with pytest.raises(ValueError, match="returned 2 rewards for 3 responses"):
        RewardScorer("function", function=ref, on_invalid="skip").score(["a", "b", "c"], ["x", "y", "z"])


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_non_finite_reward_is_an_error_naming_the_prompt(monkeypatch: pytest.MonkeyPatch, bad: float) -> None:
    ref = _module(monkeypatch, f=lambda p, r: [0.5, bad, 0.1]) + ":f"
    # The prompt is named even when the function only sees responses (score_response_only).
    scorer = RewardScorer("function", function=ref, score_response_only=True)
    with pytest.raises(ValueError) as exc:
        scorer.score(["first prompt", "the second prompt", "third"], ["r0", "r1", "r2"])
    assert str(exc.value) == (
        f"reward function {ref!r} returned a non-finite reward at index 1 ({bad}) for prompt "
        "'the second prompt', response 'r1'; set reward.on_invalid=skip to drop such prompts from "
        "their step instead")


def test_long_prompt_is_shortened_in_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _module(monkeypatch, f=lambda p, r: [NAN]) + ":f"
    with pytest.raises(ValueError) as exc:
        RewardScorer("function", function=ref).score(["x" * 500], ["r"])
    assert f"for prompt '{'x' * 77}...'" in str(exc.value)


def test_non_finite_rewards_skipped_and_logged(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    ref = _module(monkeypatch, f=lambda p, r: [0.5, NAN, INF, -1]) + ":f"
    scorer = RewardScorer(**reward_kwargs(RewardConfig(kind="function", function=ref, on_invalid="skip")))
    assert scorer.on_invalid == "skip"
    with caplog.at_level(logging.WARNING, logger="remax_ray.reward.scorer"):
        got = scorer.score(["p0", "p1", "p2", "p3"], ["a", "b", "c", "d"])
    assert got[0] == 0.5 and got[3] == -1.0
    assert math.isnan(got[1]) and math.isnan(got[2])  # inf comes back as NaN too: one test finds both
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "index 1 (nan) for prompt 'p1', response 'b'" in messages[0]
    assert "index 2 (inf) for prompt 'p2', response 'c'" in messages[1]
    assert all("dropped from this step (reward.on_invalid=skip)" in m for m in messages)


def test_non_number_is_an_error_even_with_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _module(monkeypatch, f=lambda p, r: [0.5, "oops"]) + ":f"
    with pytest.raises(ValueError, match="returned a non-number at index 1: 'oops'"):
        RewardScorer("function", function=ref, on_invalid="skip").score(["a", "b"], ["x", "y"])


def test_on_invalid_is_checked() -> None:
    with pytest.raises(ConfigError, match="reward.on_invalid: must be one of error, skip"):
        RewardScorer("vader", on_invalid="ignore")
    with pytest.raises(ConfigError, match="reward.on_invalid: unknown policy 'ignore'"):
        load_config(None, ["reward.on_invalid=ignore"])


# ----------------------------------------------------------------------- drop_invalid


def _rollout(prompt: str, scores: list[float], greedy: float | None) -> PromptRollout:
    samples = [Completion([1, 2], f"s{i}", "stop") for i in range(len(scores))]
    base = Completion([3], "g", "stop") if greedy is not None else None
    return PromptRollout(prompt, [7], samples, base, list(scores), 0.0 if greedy is None else greedy)


def test_drop_invalid_keeps_finite_prompts_in_order() -> None:
    rollouts = [
        _rollout("ok", [0.1, 0.2], 0.0),
        _rollout("nan sample", [0.1, NAN], 0.0),
        _rollout("ok too", [1.0, -1.0], 0.5),
        _rollout("nan greedy", [0.1, 0.2], NAN),
        _rollout("no greedy", [0.3, 0.4], None),
    ]
    kept, dropped = drop_invalid(rollouts)
    assert [r.prompt for r in kept] == ["ok", "ok too", "no greedy"]
    assert all(a is b for a, b in zip(kept, [rollouts[0], rollouts[2], rollouts[4]]))
    assert dropped == 4  # two prompts of two samples each; the greedy baseline is not a sample


def test_drop_invalid_nothing_to_drop_and_everything() -> None:
    good = [_rollout("a", [0.1], 0.2), _rollout("b", [0.3], None)]
    assert drop_invalid(good) == (good, 0)
    assert drop_invalid([_rollout("a", [NAN, 1.0, 2.0], 0.0)]) == ([], 3)
    assert drop_invalid([]) == ([], 0)


def test_is_valid_ignores_the_unused_greedy_score() -> None:
    rollout = _rollout("x", [0.1], None)
    rollout.greedy_score = NAN  # no greedy response: the learner never reads this value
    assert is_valid(rollout)
    assert not is_valid(_rollout("y", [INF], None))
