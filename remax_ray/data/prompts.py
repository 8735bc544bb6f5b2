"""Prompt datasets and the deterministic per-step batch order.

A dataset is a list of rows: the JSON objects of a ``.jsonl``, the rows of a ``.parquet`` file, or
the rows of a folder written by the ``datasets`` library's ``save_to_disk`` (read with pyarrow, the
format underneath, so the ``datasets`` package itself is not needed). A row gives one prompt: the
text in ``run.prompt_key``, or, in chat format, the messages in ``run.messages_key``, which the
caller's ``render`` turns into text (the policy tokenizer's chat template; see
:mod:`remax_ray.driver.preflight`). The row's other columns travel beside the prompt
(``PromptSplits.train_columns``) to a reward function that asks for them.

The batch for a step is a pure function of (seed, step), so a resumed or retried step sees the same
prompts: all the data cursor state the trainer needs is the step number.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from remax_ray.assets.home import BUILTIN_PREFIX, resolve_dataset

log = logging.getLogger(__name__)

Row = dict[str, Any]
# The held-out split of a DatasetDict folder: the first of these that it has.
HELD_OUT_SPLITS = ("test", "validation", "eval")


@dataclass(frozen=True)
class PromptSplits:
    train: list[str]
    eval: list[str]
    skipped: int
    """Rows without a usable prompt (logged with their file and line or row, not fatal)."""
    too_long: int = 0
    """Prompts of the dataset's files longer than rollout.max_prompt_tokens (truncated or dropped,
    as rollout.long_prompts says; logged)."""
    truncated: int = 0
    """Of those, the prompts kept with only their last max_prompt_tokens tokens."""
    train_columns: list[Row] = field(default_factory=list)
    """Parallel to ``train``: each row's other columns (empty when the caller built the splits
    without them)."""
    eval_columns: list[Row] = field(default_factory=list)

    def columns(self, split: str, indices: list[int]) -> list[Row]:
        """The other columns of ``split``'s rows at ``indices`` ({} for splits without columns)."""
        rows = self.train_columns if split == "train" else self.eval_columns
        return [rows[i] if rows else {} for i in indices]

    def column_names(self) -> set[str]:
        return {k for rows in (self.train_columns, self.eval_columns) for row in rows for k in row}


@dataclass(frozen=True)
class PromptKeys:
    """Where a row's prompt is: ``prompt`` (text) or, when set, ``messages`` (chat, for ``render``)."""

    prompt: str = "prompt"
    messages: str = ""
    render: Callable[[list[dict]], str] | None = None

    @property
    def setting(self) -> tuple[str, str]:
        """(the config key, its value) that names the prompt's column."""
        return ("run.messages_key", self.messages) if self.messages else ("run.prompt_key", self.prompt)


# A long-prompt policy: numbered prompts of one file -> (kept numbered prompts, too long, truncated).
Fit = Callable[[list[tuple[int, str]], Path], tuple[list[tuple[int, str]], int, int]]


def read_jsonl_prompts(path: Path) -> tuple[list[str], int]:
    """Prompts from a jsonl file; malformed lines are counted and logged, never silently dropped."""
    numbered, skipped = read_numbered_prompts(path)
    return [p for _, p in numbered], skipped


def read_numbered_prompts(path: Path, keys: PromptKeys = PromptKeys()) -> tuple[list[tuple[int, str]], int]:
    """``(line or row number, prompt)`` pairs of a dataset, and the number of skipped rows."""
    rows = _collect(path, keys)
    return rows.numbered, sum(rows.reasons.values())


def read_rows(path: Path) -> list[tuple[int, Row | None]]:
    """``(number, row)`` of every record: jsonl lines are numbered as lines (blank ones skipped and
    not counted), parquet and datasets rows from 1. A record that is not an object is ``None``."""
    if not path.exists():
        raise FileNotFoundError(f"run.dataset: prompt file {path} does not exist")
    if path.is_dir():
        return list(enumerate(_saved_dataset_rows(path), 1))
    if path.suffix == ".parquet":
        pa = _pyarrow(path, "parquet")
        try:
            return list(enumerate(pa.parquet.read_table(path).to_pylist(), 1))
        except pa.ArrowException as exc:
            raise ValueError(f"run.dataset: {path} is not a readable parquet file ({exc})") from None
    rows: list[tuple[int, Row | None]] = []
    # Split on "\n" only: str.splitlines() would also break on U+2028 etc., which JSON allows raw
    # inside strings. utf-8-sig drops a byte-order mark left by Windows editors.
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        rows.append((lineno, row if isinstance(row, dict) else None))
    return rows


def _pyarrow(path: Path, what: str) -> Any:
    try:  # imported here: only parquet and datasets folders need it
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise ValueError(f"run.dataset: reading {path} ({what}) needs pyarrow, which is not installed "
                         "(pip install pyarrow; scripts/setup.sh installs it)") from None
    return pyarrow


def _saved_dataset_rows(folder: Path) -> list[Row]:
    """The rows of a ``Dataset.save_to_disk`` folder: its ``state.json`` lists Arrow stream files."""
    state = folder / "state.json"
    if not state.exists():
        what = ("a DatasetDict without a 'train' split" if (folder / "dataset_dict.json").exists()
                else "not a dataset saved by the datasets library (no state.json or dataset_dict.json)")
        raise ValueError(f"run.dataset: {folder} is a folder but {what}")
    pa = _pyarrow(folder, "a datasets folder")
    rows: list[Row] = []
    for entry in json.loads(state.read_text())["_data_files"]:
        with pa.memory_map(str(folder / entry["filename"])) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return rows


def _messages_problem(messages: Any, key: str) -> str | None:
    if not isinstance(messages, (list, tuple)):
        return f"{key!r} is a {type(messages).__name__}, not a list of {{role, content}} messages"
    if not messages:
        return f"empty {key!r} (no message)"
    for m in messages:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            return f"{key!r} holds an item that is not a {{role, content}} message with string values"
    return None


def prompt_of(row: Row | None, keys: PromptKeys) -> tuple[str | None, str]:
    """The row's prompt text, or ``None`` and why not (a short reason without row details, so
    that equal reasons can be counted)."""
    if row is None:
        return None, "not a JSON object"
    _, key = keys.setting
    if key not in row:
        return None, f"no {key!r} field"
    value = row[key]
    if keys.messages:
        problem = _messages_problem(value, key)
        if problem:
            return None, problem
        assert keys.render is not None, "chat rows need a render function"
        try:
            value = keys.render(list(value))
        except Exception as exc:  # noqa: BLE001 - a template's own error (e.g. roles must alternate)
            return None, f"the chat template refused it ({type(exc).__name__} {exc})"
    elif not isinstance(value, str):
        return None, f"{key!r} is a {type(value).__name__}, not a string"
    if not value.strip():
        return None, f"empty {key!r}"
    return value, ""


@dataclass
class _Rows:
    """What one file or folder gave: its records, the usable prompts, and why the others were not."""

    records: list[tuple[int, Row | None]]
    numbered: list[tuple[int, str]]
    columns: dict[int, Row]
    reasons: Counter[str]
    seen: set[str]


def _collect(path: Path, keys: PromptKeys) -> _Rows:
    records = read_rows(path)
    out = _Rows(records, [], {}, Counter(), set())
    _, key = keys.setting
    for number, row in records:
        out.seen.update(row or ())
        text, reason = prompt_of(row, keys)
        if text is None:
            out.reasons[reason] += 1
            log.warning("%s:%d: skipped (%s)", path, number, reason)
            continue
        out.numbered.append((number, text))
        out.columns[number] = {k: v for k, v in row.items() if k != key}
    return out


@dataclass
class _Part:
    numbers: list[int]
    prompts: list[str]
    columns: list[Row]
    skipped: int
    too_long: int = 0
    truncated: int = 0


def _read(path: Path, keys: PromptKeys, fit: Fit | None) -> _Part:
    """Prompts (after the long-prompt policy) and the other columns of one file or folder."""
    rows = _collect(path, keys)
    if not rows.numbered:
        raise _no_prompt(path, rows, keys)
    numbered, too_long, truncated = fit(rows.numbered, path) if fit is not None else (rows.numbered, 0, 0)
    return _Part([n for n, _ in numbered], [p for _, p in numbered], [rows.columns[n] for n, _ in numbered],
                 sum(rows.reasons.values()), too_long, truncated)


def _no_prompt(path: Path, rows: _Rows, keys: PromptKeys) -> ValueError:
    if not rows.records:
        return ValueError(f"run.dataset: {path} is empty")
    unit = "lines" if path.is_file() and path.suffix != ".parquet" else "rows"
    why = "; ".join(f"{n} {reason}" for reason, n in rows.reasons.most_common(3))
    message = (f"run.dataset: {path} has no usable prompt ({len(rows.records)} {unit} skipped, see the "
               f"warnings above: {why})")
    setting, key = keys.setting
    if rows.seen and key not in rows.seen:  # the key names no column at all: the likeliest mistake
        message += (f"; {setting}={key!r} names no column of it (its columns: {', '.join(sorted(rows.seen)[:12])})"
                    + ("" if keys.messages else "; for chat messages set run.messages_key"))
    return ValueError(message)


def _sources(dataset: str) -> tuple[Path, Path | None]:
    """(the rows to train on, the held-out rows, or None when a seeded split makes them)."""
    if dataset.startswith(BUILTIN_PREFIX):
        return resolve_dataset(dataset, "train"), resolve_dataset(dataset, "eval")
    path = Path(dataset)
    index = path / "dataset_dict.json"
    if path.is_dir() and index.exists():  # a DatasetDict: its train split, and a held-out one if any
        splits = json.loads(index.read_text()).get("splits", [])
        if "train" not in splits:
            raise ValueError(f"run.dataset: {path} is a DatasetDict without a 'train' split (splits: "
                             f"{', '.join(splits)})")
        held = next((s for s in HELD_OUT_SPLITS if s in splits), None)
        return path / "train", (path / held if held else None)
    return path, None


def load_splits(dataset: str, eval_prompts: int, seed: int, fit: Fit | None = None,
                keys: PromptKeys = PromptKeys()) -> PromptSplits:
    """Train and held-out prompts, each with its row's other columns. Built-ins and DatasetDict
    folders with a test/validation split ship both; any other dataset is split by a seeded shuffle.

    ``fit`` (the long-prompt policy, see :mod:`remax_ray.driver.preflight`) runs on every file before it is
    split or cut to ``eval_prompts``, so skipping a prompt never shrinks the held-out set.
    """
    train_source, held_source = _sources(dataset)
    train = _read(train_source, keys, fit)
    if held_source is not None:
        held = _read(held_source, keys, fit)
        splits = PromptSplits(train.prompts, held.prompts[:eval_prompts], train.skipped + held.skipped,
                              train.too_long + held.too_long, train.truncated + held.truncated,
                              train.columns, held.columns[:eval_prompts])
    else:
        order = list(range(len(train.prompts)))
        random.Random(seed).shuffle(order)
        held_idx, train_idx = order[:eval_prompts], order[eval_prompts:]
        splits = PromptSplits([train.prompts[i] for i in train_idx], [train.prompts[i] for i in held_idx],
                              train.skipped, train.too_long, train.truncated,
                              [train.columns[i] for i in train_idx], [train.columns[i] for i in held_idx])
    if not splits.train or not splits.eval:
        dropped = splits.too_long - splits.truncated
        raise ValueError(f"{dataset}: need at least one training and one held-out prompt, got "
                         f"{len(splits.train)} and {len(splits.eval)} ({splits.skipped} lines skipped"
                         + (f", {dropped} too-long prompts dropped)" if dropped else ")"))
    return splits


def batch_indices(num_prompts: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Indices of the prompts for ``step``: epochs of seeded permutations, read consecutively."""
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, num_prompts)
        order = list(range(num_prompts))
        random.Random(f"{seed}-{epoch}").shuffle(order)
        take = order[offset : offset + batch_size - len(out)]
        out.extend(take)
        pos += len(take)
    return out


def shard_prompts(prompts: list[str], num_shards: int) -> list[tuple[int, list[str]]]:
    """Split a step's prompts across ``num_shards`` generators: contiguous shares whose sizes differ
    by at most one (the first ones take the remainder), each with the index of its first prompt in
    ``prompts`` (the sampling seeds are keyed by it, so any split gives the same samples).

    With at least as many prompts as generators (the config's rule) every generator gets one; fewer
    prompts leave the last generators out rather than sending them empty calls."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    base, extra = divmod(len(prompts), num_shards)
    out, lo = [], 0
    for i in range(num_shards):
        size = base + (1 if i < extra else 0)
        if size:
            out.append((lo, prompts[lo : lo + size]))
        lo += size
    return out
