"""Dataset formats (.jsonl, .parquet, a datasets save_to_disk folder), run.prompt_key and
run.messages_key (chat rows rendered with the policy tokenizer's own template), and the rows' other
columns travelling beside their prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remax_ray.config import load_config
from remax_ray.data.prompts import PromptKeys, load_splits
from remax_ray.driver.preflight import preflight

ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i), "level": i % 3} for i in range(10)]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _answers_follow_prompts(prompts: list[str], columns: list[dict]) -> None:
    assert len(prompts) == len(columns)
    for prompt, cols in zip(prompts, columns):
        i = int(prompt.split()[2])
        assert cols == {"answer": str(2 * i), "level": i % 3}


def test_prompt_key_and_columns_survive_the_seeded_split(tmp_path: Path) -> None:
    splits = load_splits(str(_jsonl(tmp_path / "q.jsonl", ROWS)), eval_prompts=3, seed=5,
                         keys=PromptKeys(prompt="question"))
    assert sorted(splits.train + splits.eval) == sorted(r["question"] for r in ROWS)
    assert len(splits.eval) == 3
    _answers_follow_prompts(splits.train, splits.train_columns)
    _answers_follow_prompts(splits.eval, splits.eval_columns)
    assert splits.column_names() == {"answer", "level"}
    assert splits.columns("train", [0, 2]) == [splits.train_columns[0], splits.train_columns[2]]


def test_columns_stay_with_their_prompts_when_long_ones_are_dropped(tmp_path: Path) -> None:
    def fit(numbered, path):  # drops every prompt with an odd number in it, as `skip` would
        kept = [(n, p) for n, p in numbered if int(p.split()[2]) % 2 == 0]
        return kept, len(numbered) - len(kept), 0

    splits = load_splits(str(_jsonl(tmp_path / "q.jsonl", ROWS)), eval_prompts=2, seed=0, fit=fit,
                         keys=PromptKeys(prompt="question"))
    assert splits.too_long == 5 and len(splits.train + splits.eval) == 5
    _answers_follow_prompts(splits.train + splits.eval, splits.train_columns + splits.eval_columns)


def test_parquet_reads_like_jsonl(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "q.parquet")
    keys = PromptKeys(prompt="question")
    got = load_splits(str(tmp_path / "q.parquet"), eval_prompts=3, seed=5, keys=keys)
    assert got == load_splits(str(_jsonl(tmp_path / "q.jsonl", ROWS)), eval_prompts=3, seed=5, keys=keys)


def test_a_broken_parquet_file_is_named(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=rf"^run.dataset: {path} is not a readable parquet file \("):
        load_splits(str(path), eval_prompts=1, seed=0)


def test_datasets_folder_reads_like_jsonl(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    keys = PromptKeys(prompt="question")
    got = load_splits(str(tmp_path / "saved"), eval_prompts=3, seed=5, keys=keys)
    assert got == load_splits(str(_jsonl(tmp_path / "q.jsonl", ROWS)), eval_prompts=3, seed=5, keys=keys)


def test_dataset_dict_folder_uses_its_train_and_test_splits(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")

    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:7]),
                          "test": datasets.Dataset.from_list(ROWS[7:])}).save_to_disk(str(folder))
    splits = load_splits(str(folder), eval_prompts=2, seed=0, keys=PromptKeys(prompt="question"))
    assert splits.train == [r["question"] for r in ROWS[:7]]  # the split as saved, not reshuffled
    assert splits.eval == [r["question"] for r in ROWS[7:9]]  # the test split, cut to eval_prompts
    _answers_follow_prompts(splits.eval, splits.eval_columns)

    datasets.DatasetDict({"validation": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "nt"))
    with pytest.raises(ValueError, match=r"is a DatasetDict without a 'train' split \(splits: validation\)"):
        load_splits(str(tmp_path / "nt"), eval_prompts=2, seed=0, keys=PromptKeys(prompt="question"))


def test_a_folder_not_saved_by_datasets_is_named(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="is a folder but not a dataset saved by the datasets library"):
        load_splits(str(tmp_path / "plain"), eval_prompts=1, seed=0)


def _chat_rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": f"the movie {i} was"}], "label": i} for i in range(n)]


def test_chat_rows_are_rendered_with_the_models_own_template(chat_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    rows = _chat_rows(6)
    cfg = load_config(None, [f"model.path={chat_model}", f"run.dataset={_jsonl(tmp_path / 'c.jsonl', rows)}",
                             "run.messages_key=messages", "run.eval_prompts=2", "reward.kind=vader"])
    _, splits = preflight(cfg)
    tok = AutoTokenizer.from_pretrained(str(chat_model))
    expected = {tok.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True): r["label"]
                for r in rows}
    assert sorted(splits.train + splits.eval) == sorted(expected)
    prompt = splits.eval[0]
    # The template's own rendering, written out: every turn, then the generation prompt.
    i = splits.eval_columns[0]["label"]
    assert prompt == f"system: Be brief.\nuser: the movie {i} was\nassistant:"
    # The messages are the prompt, so they are not also a column; the row's other fields are.
    assert splits.eval_columns[0] == {"label": expected[prompt]}


def test_chat_rows_from_parquet(chat_model: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(_chat_rows(5)), tmp_path / "c.parquet")
    cfg = load_config(None, [f"model.path={chat_model}", f"run.dataset={tmp_path / 'c.parquet'}",
                             "run.messages_key=messages", "run.eval_prompts=1", "reward.kind=vader"])
    _, splits = preflight(cfg)
    assert all(p.endswith("assistant:") and "user: the movie" in p for p in splits.train + splits.eval)
