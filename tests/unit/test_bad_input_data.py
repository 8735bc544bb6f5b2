"""Bad-input matrix, dataset rows: each bad dataset gives one clear error naming the file or line
before any actor starts (preflight), or a counted and logged skip."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

# Imported at collection so their import time is not spent inside a test.
from transformers import AutoTokenizer

from remax_ray.config import ConfigError, load_config
from remax_ray.data.long_prompts import make_fit, truncate_text
from remax_ray.driver.preflight import preflight


@pytest.fixture(scope="module")
def tok(model_dir: Path):
    return AutoTokenizer.from_pretrained(str(model_dir))


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _cfg(model_dir: Path, dataset: Path | str, *extra: str):
    return load_config(None, [f"model.path={model_dir}", f"run.dataset={dataset}", "run.eval_prompts=2",
                              "reward.kind=vader", *extra])


SHORT = [f"the movie was good {i}" for i in range(6)]
LONG = "the plot was boring and bad but the actors were great " * 6


def test_missing_dataset_names_key_and_file(model_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError) as exc:
        preflight(_cfg(model_dir, missing))
    assert str(exc.value) == f"run.dataset: prompt file {missing} does not exist"


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_dataset(model_dir: Path, tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError) as exc:
        preflight(_cfg(model_dir, path))
    assert str(exc.value) == f"run.dataset: {path} is empty"


def test_dataset_of_only_bad_lines(model_dir: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", ["{oops", json.dumps({"text": "x"})])
    with pytest.raises(ValueError, match=r"has no usable prompt \(2 lines skipped"):
        preflight(_cfg(model_dir, path))


def test_malformed_line_and_empty_prompt_counted_and_logged_with_line_numbers(
        model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [json.dumps({"prompt": p}) for p in SHORT]
    lines.insert(2, '{"prompt": "unterminated')  # line 3: malformed JSON
    lines.insert(5, json.dumps({"prompt": ""}))  # line 6: an empty prompt
    lines.insert(6, json.dumps({"prompt": " \t "}))  # line 7: only whitespace
    path = _write(tmp_path / "mixed.jsonl", lines)
    with caplog.at_level(logging.WARNING):
        _, splits = preflight(_cfg(model_dir, path))
    assert splits.skipped == 3
    assert sorted(splits.train + splits.eval) == sorted(SHORT)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m.split(": skipped")[0] for m in warned] == [f"{path}:3", f"{path}:6", f"{path}:7"]


# ----------------------------------------------------------------------- long prompts


def _long_file(tmp_path: Path) -> Path:
    # Lines 2 and 5 are too long for 16 tokens; the short ones are.
    prompts = [SHORT[0], LONG, SHORT[1], SHORT[2], "x " + LONG, SHORT[3], SHORT[4]]
    return _write(tmp_path / "long.jsonl", [json.dumps({"prompt": p}) for p in prompts])


def test_long_prompt_default_is_truncate(model_dir: Path, tok, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(model_dir, _long_file(tmp_path), "rollout.max_prompt_tokens=16")
    assert cfg.rollout.long_prompts == "truncate"
    with caplog.at_level(logging.WARNING, logger="remax_ray.data.long_prompts"):
        _, splits = preflight(cfg)
    assert (splits.too_long, splits.truncated) == (2, 2)
    prompts = splits.train + splits.eval
    assert len(prompts) == 7
    cut = [p for p in prompts if p not in SHORT]
    assert len(cut) == 2
    for text in cut:
        # The text the reward will see is what the policy sees: it encodes within the limit, so the
        # generator's own cut never fires, and it is the end of the original prompt.
        assert len(_ids(tok, text)) <= 16
        assert LONG.endswith(text)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "2 prompts longer than rollout.max_prompt_tokens=16 tokens truncated" in message
    assert "at lines 2 (" in message and ", 5 (" in message


def test_long_prompt_skip_counts_and_keeps_eval_size(model_dir: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(model_dir, _long_file(tmp_path), "rollout.max_prompt_tokens=16",
               "rollout.long_prompts=skip", "run.eval_prompts=3")
    with caplog.at_level(logging.WARNING, logger="remax_ray.data.long_prompts"):
        _, splits = preflight(cfg)
    assert (splits.too_long, splits.truncated) == (2, 0)
    assert sorted(splits.train + splits.eval) == sorted(SHORT[:5])
    assert len(splits.eval) == 3  # skipped before the split, so the held-out set keeps its size
    assert "2 prompts longer than rollout.max_prompt_tokens=16 tokens skipped" in caplog.text


def test_long_prompt_error_names_file_and_lines(model_dir: Path, tmp_path: Path) -> None:
    path = _long_file(tmp_path)
    cfg = _cfg(model_dir, path, "rollout.max_prompt_tokens=16", "rollout.long_prompts=error")
    with pytest.raises(ConfigError) as exc:
        preflight(cfg)
    message = str(exc.value)
    assert message.startswith(f"{path}: 2 prompts are longer than rollout.max_prompt_tokens=16")
    assert "at lines 2 (" in message and ", 5 (" in message


def test_every_prompt_too_long_and_skipped(model_dir: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "all-long.jsonl", [json.dumps({"prompt": LONG})] * 4)
    cfg = _cfg(model_dir, path, "rollout.max_prompt_tokens=8", "rollout.long_prompts=skip")
    with pytest.raises(ValueError, match=r"got 0 and 0 \(0 lines skipped, 4 too-long prompts dropped\)"):
        preflight(cfg)


def test_prompts_within_the_limit_are_untouched(model_dir: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "short.jsonl", [json.dumps({"prompt": p}) for p in SHORT])
    _, splits = preflight(_cfg(model_dir, path, "rollout.long_prompts=error"))
    assert (splits.too_long, splits.truncated) == (0, 0)
    assert sorted(splits.train + splits.eval) == sorted(SHORT)


def test_truncate_text_matches_the_old_generator_cut(tok) -> None:
    prompt = LONG.strip()
    ids = _ids(tok, prompt)
    for k in (1, 5, 16, 31):
        text = truncate_text(ids, k, lambda ts: [_ids(tok, t) for t in ts], tok.decode)
        assert text is not None and prompt.endswith(text)
        # The same tokens as the generator's old ids[-k:], so a run that relied on it is unchanged.
        assert _ids(tok, text) == ids[-k:]


def test_truncate_text_moves_past_a_cut_character() -> None:
    # A fake byte-level tokenizer: one token per UTF-8 byte. Cutting inside "é" (2 bytes) would decode
    # to U+FFFD, so the cut moves right to the next whole character.
    def encode(texts: list[str]) -> list[list[int]]:
        return [list(t.encode()) for t in texts]

    def decode(ids: list[int]) -> str:
        return bytes(ids).decode(errors="replace")

    ids = encode(["abé"])[0]  # a, b, 0xC3, 0xA9
    assert truncate_text(ids, 1, encode, decode) is None  # no clean 1-byte suffix
    assert truncate_text(ids, 2, encode, decode) == "é"
    assert truncate_text(ids, 3, encode, decode) == "bé"
    fit = make_fit(encode, decode, 1, "truncate")
    # "abé" cannot be cut to 1 clean byte: dropped, and counted as too long but not truncated.
    assert fit([(1, "abé"), (2, "z")], Path("f.jsonl")) == ([(2, "z")], 1, 0)


def test_make_fit_refuses_an_unknown_policy() -> None:
    with pytest.raises(ConfigError, match="rollout.long_prompts: unknown policy 'drop'"):
        make_fit(lambda ts: [], str, 4, "drop")
