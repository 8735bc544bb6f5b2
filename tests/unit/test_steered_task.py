"""The instruction-conditioned movie-review task: builtin:steered-reviews (prompts) and
builtin:steered-pairs (the pairs of builtin:steered-rm), built by the real builders from a small
stand-in Pang & Lee corpus in a temporary asset home (no download)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from remax_ray.assets import corpora, home
from remax_ray.assets.steered import (
    INSTRUCTIONS,
    prepare_steered_pairs,
    prepare_steered_reviews,
    steered_prompt,
    steered_rows,
)
from remax_ray.config import load_config, task_overrides
from remax_ray.config.rm import STEERED_RM_RECIPE, load_rm_config
from remax_ray.data.pairs import load_pair_splits, read_pairs_jsonl
from remax_ray.data.prompts import load_splits
from remax_ray.reward import RewardScorer, train_rm
from remax_ray.reward.train_rm import render

QUIET = {"log": lambda _: None}


@pytest.fixture
def corpus_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An asset home holding only the two corpus files: 60 reviews, 30 + 24 distinct snippets."""
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path))
    monkeypatch.delenv(home.PREBUILT_ENV, raising=False)
    (tmp_path / corpora.PANG_LEE).mkdir()
    reviews = "".join(f'"1","review {i} opens with these words and then it goes on for a while ."\n'
                      for i in range(60))
    snippets = ("".join(f'"1","a good film , number {i} ."\n' for i in range(30))
                + "".join(f'"-1","a bad film , number {i} ."\n' for i in range(24)))
    (tmp_path / corpora.PANG_LEE / corpora.PANG_LEE_REVIEWS).write_text(reviews)
    (tmp_path / corpora.PANG_LEE / corpora.PANG_LEE_SNIPPETS).write_text(snippets)
    return tmp_path


def _rows(file: Path) -> list[dict]:
    return [json.loads(line) for line in file.read_text().splitlines()]


def _openings(file: Path) -> list[str]:
    return [r["prompt"] for r in _rows(file)]


def test_every_opening_once_with_each_instruction_in_adjacent_rows() -> None:
    rows = steered_rows(["A", "B", "C"])
    assert [r["instruction"] for r in rows] == ["positive", "negative", "negative", "positive",
                                                "positive", "negative"]
    assert rows[2] == {"prompt": "Continue this movie review in a negative tone.\nReview: B",
                       "instruction": "negative"}
    for n in range(0, len(rows) + 1, 2):  # any even prefix (run.eval_prompts) is balanced
        assert Counter(r["instruction"] for r in rows[:n])["positive"] == n // 2


def test_steered_reviews_keep_the_movie_review_split(corpus_home: Path) -> None:
    out = prepare_steered_reviews(**QUIET)
    reviews = corpus_home / home.MOVIE_REVIEWS  # built on the way, with its own split
    for split in ("train", "eval"):
        rows = _rows(out / f"{split}.jsonl")
        openings = _openings(reviews / f"{split}.jsonl")
        assert rows == steered_rows(openings)
        assert Counter(r["instruction"] for r in rows) == {i: len(openings) for i in INSTRUCTIONS}
    train = {r["prompt"].split("Review: ", 1)[1] for r in _rows(out / "train.jsonl")}
    held = {r["prompt"].split("Review: ", 1)[1] for r in _rows(out / "eval.jsonl")}
    assert train and held and not train & held  # no held-out opening is trained on


def test_a_run_reads_the_instruction_column(corpus_home: Path) -> None:
    prepare_steered_reviews(**QUIET)
    splits = load_splits("builtin:steered-reviews", eval_prompts=4, seed=0)
    assert splits.eval_columns == [{"instruction": "positive"}, {"instruction": "negative"},
                                   {"instruction": "negative"}, {"instruction": "positive"}]
    assert all(p.startswith(f"Continue this movie review in a {c['instruction']} tone.\nReview: ")
               for p, c in zip(splits.train, splits.train_columns))


def test_steered_pairs_choose_by_the_instruction(corpus_home: Path) -> None:
    pairs = read_pairs_jsonl(prepare_steered_pairs(**QUIET) / "pairs.jsonl", group_key="instruction")
    assert len(pairs) == 24  # one per (positive, negative) snippet couple
    assert Counter(p.group for p in pairs) == {"positive": 12, "negative": 12}
    train_openings = set(_openings(corpus_home / home.MOVIE_REVIEWS / "train.jsonl"))
    for p in pairs:
        opening = p.prompt.split("Review: ", 1)[1]
        assert p.prompt == steered_prompt(p.group, opening) and opening in train_openings
        wanted, other = ("good", "bad") if p.group == "positive" else ("bad", "good")
        assert p.chosen.startswith(f" A {wanted} film") and p.rejected.startswith(f" A {other} film")


def test_held_out_pairs_hold_snippets_neither_reward_model_saw(corpus_home: Path) -> None:
    splits = load_pair_splits("builtin:steered-pairs", 0.25, seed=0, group_key="instruction", **QUIET)
    seen = {t.strip() for p in splits.train for t in (p.chosen, p.rejected)}
    held = {t.strip() for p in splits.heldout for t in (p.chosen, p.rejected)}
    assert len(held) == 12 and not seen & held
    assert {p.group for p in splits.heldout} == {"positive", "negative"}
    # builtin:steered-rm starts from builtin:sentiment-rm: the same split of the movie pairs holds
    # out the same snippets, so no held-out snippet reached the starting point either.
    movie = load_pair_splits("builtin:movie-pairs", 0.25, seed=0, **QUIET)
    assert held == {t for p in movie.heldout for t in (p.chosen, p.rejected)}


def test_the_task_scores_the_text_the_reward_model_was_fit_on(corpus_home: Path) -> None:
    rm = load_rm_config(None, STEERED_RM_RECIPE)  # the recipe is a valid train-rm config
    sentiment = load_rm_config(None, [])
    assert (rm.data.heldout_fraction, rm.train.seed) == (sentiment.data.heldout_fraction, sentiment.train.seed)
    task = load_config(None, task_overrides("steered-sentiment"))
    assert task.reward.model_path == "builtin:steered-rm" and not task.reward.blanks_prompt
    pairs = read_pairs_jsonl(prepare_steered_pairs(**QUIET) / "pairs.jsonl", group_key=rm.data.group_key)
    # The scorer as the run builds it (its render needs no model), on the reward model's own pairs.
    scorer = RewardScorer("function", function="remax_ray.reward.functions:char_share_e",
                          template=task.reward.template, score_response_only=task.reward.blanks_prompt)
    scored = scorer.render([p.prompt for p in pairs], [p.chosen for p in pairs])
    assert scored == render(pairs, rm.data.template)[0]


def test_a_builtin_reward_model_is_a_backbone_to_fit_further(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="builtin:sentiment-rm is not prepared yet"):
        home.resolve_backbone_path("builtin:sentiment-rm")
    (tmp_path / home.SENTIMENT_RM).mkdir()
    (tmp_path / home.SENTIMENT_RM / "config.json").write_text("{}")
    assert home.resolve_backbone_path("builtin:sentiment-rm") == str(tmp_path / home.SENTIMENT_RM)
    with pytest.raises(ValueError, match="known: builtin:minilm-l6, builtin:sentiment-rm, builtin:steered-rm"):
        home.resolve_backbone_path("builtin:nope")


def test_train_rm_builds_a_builtin_starting_point_first(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setitem(train_rm._BUILTIN_RMS, home.SENTIMENT_RM, lambda log: built.append("sentiment-rm"))
    monkeypatch.setattr(train_rm, "load_pair_splits", stop)
    cfg = load_rm_config(None, [*STEERED_RM_RECIPE, f"train.output_dir={tmp_path / 'rm'}"])
    with pytest.raises(Stop):
        train_rm.train_reward_model(cfg, log=lambda _: None)
    assert built == ["sentiment-rm"]
