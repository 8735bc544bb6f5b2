"""Rewards that see the row: a function reward gets the dataset columns it names
(``fn(prompts, responses, answer)``) or all of them (``**columns``), as lists parallel to the
responses; a two-argument function keeps working. Also the trainer's side: each response's row
reaches the reward actor, and a dataset without columns sends none."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from remax_ray.data.rollouts import Completion, PromptRollout
from remax_ray.driver import actor_calls
from remax_ray.reward import RewardScorer
from remax_ray.reward.functions import exact_match, last_number
from remax_ray.reward.kinds import ColumnParams, column_params

ROWS = [{"answer": "42", "level": 1}, {"answer": "7"}, {"answer": None, "level": 3}]


def _module(monkeypatch: pytest.MonkeyPatch, **attrs: object) -> str:
    module = types.ModuleType("column_rewards_q18")
    for name, value in attrs.items():
        setattr(module, name, value)
    monkeypatch.setitem(sys.modules, "column_rewards_q18", module)
    return "column_rewards_q18"


def test_column_params_read_from_the_signature() -> None:
    def two(prompts, responses): ...
    def named(p, r, answer, level=0): ...
    def keyword_only(prompts, responses, *, answer): ...
    def every(prompts, responses, **columns): ...
    def both(prompts, responses, answer, **rest): ...

    assert column_params(two) == ColumnParams(reserved=frozenset({"prompts", "responses"}))
    assert column_params(named) == ColumnParams(("answer", "level"), frozenset({"answer"}), False,
                                                frozenset({"p", "r"}))
    assert column_params(keyword_only).required == frozenset({"answer"})
    assert column_params(every).every and column_params(every).named == ()
    assert column_params(both).named == ("answer",) and column_params(both).every
    assert column_params(lambda p, r: []).named == ()
    assert column_params(max) == ColumnParams()  # no readable signature: no columns


def test_columns_arrive_as_lists_parallel_to_the_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def named(prompts, responses, answer):
        seen["named"] = answer
        return [0.0] * len(responses)

    def every(prompts, responses, **columns):
        seen["every"] = columns
        return [0.0] * len(responses)

    def two(prompts, responses):
        return [1.0] * len(responses)

    ref = _module(monkeypatch, named=named, every=every, two=two)
    args = (["p0", "p1", "p2"], ["r0", "r1", "r2"], ROWS)
    RewardScorer("function", function=f"{ref}:named").score(*args)
    RewardScorer("function", function=f"{ref}:every").score(*args)
    assert seen["named"] == ["42", "7", None]
    # Every column any row has; a row without one gives None.
    assert seen["every"] == {"answer": ["42", "7", None], "level": [1, None, 3]}
    assert RewardScorer("function", function=f"{ref}:two").score(*args) == [1.0, 1.0, 1.0]  # rows ignored


def test_blanked_prompts_still_get_their_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    def spy(prompts, responses, answer):
        return [float(p == "" and a == "42") for p, a in zip(prompts, answer)]

    ref = _module(monkeypatch, spy=spy)
    scorer = RewardScorer("function", function=f"{ref}:spy", score_response_only=True)
    assert scorer.score(["the prompt"], ["r"], [{"answer": "42"}]) == [1.0]


def test_a_required_column_without_rows_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _module(monkeypatch, needs=lambda prompts, responses, answer: [0.0] * len(responses))
    with pytest.raises(ValueError, match=r"takes the dataset columns \['answer'\], but score\(\) was given no rows"):
        RewardScorer("function", function=f"{ref}:needs").score(["p"], ["r"])
    with pytest.raises(ValueError, match="score\\(\\) got 1 rows for 2 responses"):
        RewardScorer("function", function=f"{ref}:needs").score(["p", "q"], ["r", "s"], [{}])


def test_exact_match_on_the_last_number() -> None:
    responses = ["42", " The answer is 42.", "17 + 25 = 42", "42 or 41", "forty-two", "36-39=-3", "1,024", "42.0"]
    answers = ["42", "42", "42", "42", "42", "-3", "1024", "42"]
    assert exact_match([""] * 8, responses, answers) == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    assert exact_match(["", ""], ["7", "7"], [7, None]) == [1.0, 0.0]  # a number answer; a missing one
    assert (last_number("x = 2.5 or 3"), last_number("36 - 25 = 11."), last_number("none")) == ("3", "11", None)


class _Reward:
    """A reward actor handle whose ``score.remote`` scores in-process and records its arguments."""

    def __init__(self):
        self.calls = []
        self.score = SimpleNamespace(remote=self._score)

    def _score(self, prompts, responses, **kwargs):
        self.calls.append((prompts, responses, kwargs))
        return [float(len(r)) for r in responses]


def _rollout(prompt: str, samples: list[str], greedy: str | None) -> PromptRollout:
    done = lambda text: Completion([1], text, "stop")  # noqa: E731
    return PromptRollout(prompt, [1], [done(s) for s in samples], done(greedy) if greedy else None)


def test_each_response_gets_its_prompts_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actor_calls.ray, "get", lambda x: x)
    reward = _Reward()
    rollouts = [_rollout("a", ["s0", "s11"], "g"), _rollout("b", ["s222", "s3"], "gg")]
    actor_calls.score(reward, rollouts, [{"answer": "1"}, {"answer": "2"}])
    prompts, responses, kwargs = reward.calls[0]
    assert prompts == ["a", "a", "a", "b", "b", "b"] and responses == ["s0", "s11", "g", "s222", "s3", "gg"]
    assert kwargs == {"rows": [{"answer": "1"}] * 3 + [{"answer": "2"}] * 3}
    assert [r.sample_scores for r in rollouts] == [[2.0, 3.0], [4.0, 2.0]]
    assert [r.greedy_score for r in rollouts] == [1.0, 2.0]


@pytest.mark.parametrize("columns", [None, [{}, {}]])
def test_a_dataset_without_columns_sends_no_rows(monkeypatch: pytest.MonkeyPatch, columns) -> None:
    monkeypatch.setattr(actor_calls.ray, "get", lambda x: x)
    reward = _Reward()
    actor_calls.score(reward, [_rollout("a", ["s"], None), _rollout("b", ["t"], None)], columns)
    assert reward.calls[0][2] == {}  # the call is exactly the two-argument one of before
