"""Tests for remax_ray.data.prompts: jsonl reading, seeded splits, per-step batch order."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from remax_ray.data.prompts import PromptSplits, batch_indices, load_splits, read_jsonl_prompts, shard_prompts


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _prompt_file(tmp_path: Path, n: int, name: str = "p.jsonl") -> Path:
    return _write(tmp_path / name, [json.dumps({"prompt": f"prompt {i}"}) for i in range(n)])


# ---------------------------------------------------------------- read_jsonl_prompts


def test_read_counts_and_skips_bad_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path / "mixed.jsonl", [
        json.dumps({"prompt": "good one"}),       # 1 ok
        "{not json",                              # 2 invalid JSON
        json.dumps({"text": "no prompt key"}),    # 3 missing prompt
        json.dumps({"prompt": ""}),               # 4 empty
        json.dumps({"prompt": "   "}),            # 5 whitespace only
        json.dumps({"prompt": 7}),                # 6 not a string
        json.dumps(["prompt", "a list"]),         # 7 a JSON list
        "",                                       # blank: ignored, not counted
        json.dumps("just a string"),              # 9 a JSON string
        "null",                                   # 10 JSON null
        json.dumps({"prompt": "good two", "x": 1}),  # 11 ok (extra keys are fine)
    ])
    with caplog.at_level(logging.WARNING, logger="remax_ray.data.prompts"):
        prompts, skipped = read_jsonl_prompts(path)
    assert prompts == ["good one", "good two"]
    assert skipped == 8  # lines 2, 3, 4, 5, 6, 7, 9, 10
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 8
    # Each warning names the file and the 1-based line number.
    lines = [int(r.getMessage().split(":")[-2]) for r in warned]
    assert lines == [2, 3, 4, 5, 6, 7, 9, 10]
    assert all(str(path) in r.getMessage() for r in warned)


def test_read_keeps_prompt_text_verbatim(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [json.dumps({"prompt": "  Héllo, \"world\"\tok  "}),
                                         json.dumps({"prompt": "ünïcödé ☃"}, ensure_ascii=False)])
    prompts, skipped = read_jsonl_prompts(path)
    assert prompts == ["  Héllo, \"world\"\tok  ", "ünïcödé ☃"]
    assert skipped == 0


def test_read_crlf_lines(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"prompt": "a"}\r\n{"prompt": "b"}\r\n')
    assert read_jsonl_prompts(path) == (["a", "b"], 0)


def test_read_prompt_with_unicode_line_separator(tmp_path: Path) -> None:
    path = tmp_path / "u2028.jsonl"
    text = json.dumps({"prompt": "first\u2028second"}, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    assert read_jsonl_prompts(path) == (["first\u2028second"], 0)


def test_read_strips_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a"}\n{"prompt": "b"}\n')
    assert read_jsonl_prompts(path) == (["a", "b"], 0)


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_jsonl_prompts(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- load_splits


def test_split_sizes_disjoint_and_complete(tmp_path: Path) -> None:
    path = _prompt_file(tmp_path, 20)
    s = load_splits(str(path), eval_prompts=5, seed=0)
    assert isinstance(s, PromptSplits)
    assert len(s.eval) == 5 and len(s.train) == 15  # 20 - 5
    assert not set(s.train) & set(s.eval)
    assert sorted(s.train + s.eval) == sorted(f"prompt {i}" for i in range(20))
    assert s.skipped == 0


def test_split_is_seeded_and_deterministic(tmp_path: Path) -> None:
    path = _prompt_file(tmp_path, 30)
    a = load_splits(str(path), eval_prompts=6, seed=3)
    b = load_splits(str(path), eval_prompts=6, seed=3)
    c = load_splits(str(path), eval_prompts=6, seed=4)
    assert a == b
    assert a.eval != c.eval  # another seed, another held-out set (C(30, 6) = 593775 choices)
    # The split is shuffled, not the first lines of the file.
    assert a.eval != [f"prompt {i}" for i in range(6)]


def test_split_reports_skipped_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [json.dumps({"prompt": f"p{i}"}) for i in range(4)] + ["oops"])
    s = load_splits(str(path), eval_prompts=1, seed=0)
    assert (len(s.train), len(s.eval), s.skipped) == (3, 1, 1)


def test_empty_file_is_named(tmp_path: Path) -> None:
    path = _prompt_file(tmp_path, 0)
    with pytest.raises(ValueError, match=rf"^run.dataset: {path} is empty$"):
        load_splits(str(path), eval_prompts=1, seed=0)


@pytest.mark.parametrize(("n", "eval_prompts"), [(3, 3), (3, 5)])
def test_too_few_prompts(tmp_path: Path, n: int, eval_prompts: int) -> None:
    path = _prompt_file(tmp_path, n)
    # The message gives the train / held-out counts: train = max(0, n - eval), eval = min(n, eval).
    train, held = max(0, n - eval_prompts), min(n, eval_prompts)
    with pytest.raises(ValueError, match=rf"got {train} and {held} \(0 lines skipped\)"):
        load_splits(str(path), eval_prompts=eval_prompts, seed=0)


def test_split_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_splits(str(tmp_path / "missing.jsonl"), eval_prompts=1, seed=0)


# ---------------------------------------------------------------- batch_indices


def test_batch_indices_deterministic() -> None:
    assert batch_indices(17, 5, step=3, seed=9) == batch_indices(17, 5, step=3, seed=9)


def test_batch_indices_in_range_and_size() -> None:
    for step in range(10):
        idx = batch_indices(7, 3, step=step, seed=1)
        assert len(idx) == 3
        assert all(0 <= i < 7 for i in idx)


def test_epoch_is_a_permutation_when_batch_divides() -> None:
    # 12 prompts, batch 4: steps 0..2 are epoch 0, steps 3..5 are epoch 1.
    steps = [batch_indices(12, 4, step=s, seed=0) for s in range(6)]
    epoch0 = [i for b in steps[:3] for i in b]
    epoch1 = [i for b in steps[3:] for i in b]
    assert sorted(epoch0) == list(range(12))
    assert sorted(epoch1) == list(range(12))
    assert epoch0 != epoch1  # a fresh shuffle per epoch
    for b in steps:
        assert len(set(b)) == 4  # no repeats inside a step


def test_epoch_is_a_permutation_when_batch_does_not_divide() -> None:
    # 10 prompts, batch 4: steps 0..4 read positions 0..19 = two full epochs; step 2 reads
    # positions 8..11, the last 2 of epoch 0 and the first 2 of epoch 1.
    flat = [i for s in range(5) for i in batch_indices(10, 4, step=s, seed=5)]
    assert len(flat) == 20
    assert sorted(flat[:10]) == list(range(10))
    assert sorted(flat[10:]) == list(range(10))
    # Step 2 straddles the boundary: its first 2 are the two prompts steps 0 and 1 have not used yet.
    step0, step1, step2 = (batch_indices(10, 4, step=s, seed=5) for s in range(3))
    assert set(step2[:2]) == set(range(10)) - set(step0 + step1)
    # Steps 5..9 read positions 20..39 = epochs 2 and 3, again each a permutation.
    flat2 = [i for s in range(5, 10) for i in batch_indices(10, 4, step=s, seed=5)]
    assert sorted(flat2[:10]) == list(range(10)) and sorted(flat2[10:]) == list(range(10))


def test_batch_larger_than_dataset() -> None:
    # 3 prompts, batch 5: step 0 is all of epoch 0 plus 2 of epoch 1; steps 0..2 = 15 = 5 epochs.
    flat = [i for s in range(3) for i in batch_indices(3, 5, step=s, seed=2)]
    for e in range(5):
        assert sorted(flat[3 * e : 3 * e + 3]) == [0, 1, 2]


def test_single_prompt() -> None:
    assert batch_indices(1, 3, step=4, seed=0) == [0, 0, 0]


def test_different_seeds_differ() -> None:
    orders = {tuple(batch_indices(20, 20, step=0, seed=s)) for s in range(5)}
    assert len(orders) == 5  # 20! orders: five seeds all different


def test_step_is_the_only_cursor() -> None:
    # A later step does not depend on having computed the earlier ones (resume / retry).
    later = batch_indices(13, 4, step=9, seed=7)
    for s in range(9):
        batch_indices(13, 4, step=s, seed=7)
    assert batch_indices(13, 4, step=9, seed=7) == later


# ---------------------------------------------------------------- shard_prompts


@pytest.mark.parametrize("n, shards, sizes", [
    (5, 4, [2, 1, 1, 1]),  # ceil(5 / 4) = 2 per share would have left the fourth generator idle
    (8, 2, [4, 4]),
    (7, 3, [3, 2, 2]),
    (2, 3, [1, 1]),  # fewer prompts than generators: no empty calls
    (4, 1, [4]),
])
def test_shards_are_contiguous_balanced_and_indexed(n: int, shards: int, sizes: list[int]) -> None:
    prompts = [f"p{i}" for i in range(n)]
    out = shard_prompts(prompts, shards)
    assert [len(share) for _, share in out] == sizes
    assert [lo for lo, _ in out] == [sum(sizes[:i]) for i in range(len(sizes))]
    assert [p for _, share in out for p in share] == prompts


def test_shards_need_a_generator() -> None:
    with pytest.raises(ValueError, match="num_shards must be >= 1"):
        shard_prompts(["p"], 0)
