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


# ----------------------------------------------------------------------- keys, types, chat rows


def test_prompt_key_naming_no_column_names_the_key_and_the_columns(model_dir: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", [json.dumps({"question": p, "answer": "1"}) for p in SHORT])
    with pytest.raises(ValueError) as exc:
        preflight(_cfg(model_dir, path))
    message = str(exc.value)
    assert message.startswith(f"run.dataset: {path} has no usable prompt (6 lines skipped")
    assert "6 no 'prompt' field" in message
    assert "run.prompt_key='prompt' names no column of it (its columns: answer, question)" in message
    # The fix the message points at works:
    _, splits = preflight(_cfg(model_dir, path, "run.prompt_key=question"))
    assert sorted(splits.train + splits.eval) == sorted(SHORT)


def test_rows_missing_the_key_or_of_the_wrong_type_are_counted_and_logged(
        model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [json.dumps({"prompt": p}) for p in SHORT]
    lines.insert(1, json.dumps({"text": "no prompt"}))  # line 2: missing key
    lines.insert(3, json.dumps({"prompt": 17}))  # line 4: a number
    lines.insert(4, json.dumps({"prompt": ["a", "list"]}))  # line 5: a list
    path = _write(tmp_path / "typed.jsonl", lines)
    with caplog.at_level(logging.WARNING, logger="remax_ray.data.prompts"):
        _, splits = preflight(_cfg(model_dir, path))
    assert splits.skipped == 3 and sorted(splits.train + splits.eval) == sorted(SHORT)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}:2: skipped (no 'prompt' field)",
        f"{path}:4: skipped ('prompt' is a int, not a string)",
        f"{path}:5: skipped ('prompt' is a list, not a string)"]


def _chat(content: str) -> dict:
    return {"messages": [{"role": "user", "content": content}]}


def test_chat_data_for_a_model_without_a_chat_template(model_dir: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "chat.jsonl", [json.dumps(_chat(p)) for p in SHORT])
    with pytest.raises(ConfigError) as exc:
        preflight(_cfg(model_dir, path, "run.messages_key=messages"))
    assert str(exc.value).startswith(f"run.messages_key='messages': the tokenizer of model.path ({model_dir}) "
                                     "has no chat template")


def test_empty_or_malformed_messages_are_counted_and_logged(chat_model: Path, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    lines = [json.dumps(_chat(p)) for p in SHORT]
    lines.insert(0, json.dumps({"messages": []}))  # line 1: no message
    lines.insert(2, json.dumps({"messages": "just text"}))  # line 3: a string, not messages
    lines.insert(3, json.dumps({"messages": [{"role": "user"}]}))  # line 4: no content
    lines.insert(4, json.dumps({"prompt": "plain"}))  # line 5: no messages at all
    path = _write(tmp_path / "chat.jsonl", lines)
    with caplog.at_level(logging.WARNING, logger="remax_ray.data.prompts"):
        _, splits = preflight(_cfg(chat_model, path, "run.messages_key=messages"))
    assert splits.skipped == 4
    assert sorted(splits.train + splits.eval) == sorted(f"user: {p}\nassistant:" for p in SHORT)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}:1: skipped (empty 'messages' (no message))",
        f"{path}:3: skipped ('messages' is a str, not a list of {{role, content}} messages)",
        f"{path}:4: skipped ('messages' holds an item that is not a {{role, content}} message with string values)",
        f"{path}:5: skipped (no 'messages' field)"]


def test_messages_key_on_a_text_column_names_the_key(chat_model: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "text.jsonl", [json.dumps({"prompt": p}) for p in SHORT])
    with pytest.raises(ValueError) as exc:
        preflight(_cfg(chat_model, path, "run.messages_key=prompt"))
    assert "6 'prompt' is a str, not a list of {role, content} messages" in str(exc.value)
    with pytest.raises(ValueError, match=r"run.messages_key='messages' names no column of it \(its columns: prompt\)"):
        preflight(_cfg(chat_model, path, "run.messages_key=messages"))


def test_a_chat_row_too_long_only_after_templating(chat_model: Path, tok, tmp_path: Path) -> None:
    # The content alone fits in 16 tokens; "user: ...\nassistant:" around it does not.
    content = "the movie was good and fun"
    rendered = f"user: {content}\nassistant:"
    assert len(_ids(tok, content)) <= 16 < len(_ids(tok, rendered))
    lines = [json.dumps(_chat(p)) for p in ("good", "bad", "fun", "great")]
    lines.insert(2, json.dumps(_chat(content)))  # line 3
    path = _write(tmp_path / "chat.jsonl", lines)
    with pytest.raises(ConfigError) as exc:
        preflight(_cfg(chat_model, path, "run.messages_key=messages", "rollout.max_prompt_tokens=16",
                       "rollout.long_prompts=error"))
    assert str(exc.value).startswith(f"{path}: 1 prompts are longer than rollout.max_prompt_tokens=16")
    assert "at lines 3 (" in str(exc.value)
    _, splits = preflight(_cfg(chat_model, path, "run.messages_key=messages", "rollout.max_prompt_tokens=16",
                               "rollout.long_prompts=skip"))
    assert (splits.too_long, len(splits.train + splits.eval)) == (1, 4)


def test_parquet_without_pyarrow_names_the_package(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import sys

    path = tmp_path / "p.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an environment without it sees
    with pytest.raises(ValueError, match=rf"^run.dataset: reading {path} \(parquet\) needs pyarrow, which is "
                                         "not installed"):
        preflight(_cfg(model_dir, path))
