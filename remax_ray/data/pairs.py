"""Comparison pairs for reward-model training: a jsonl file, or the builtin pairs
(``builtin:movie-pairs``, ``builtin:steered-pairs``).

A record is ``{"prompt": str, "chosen": str, "rejected": str}``: ``chosen`` is the preferred
response to ``prompt``. Unlike prompt files, a pairs file is read strictly: a bad line is an error
that names the line, because a silently dropped or mislabelled comparison trains the reward the
wrong way round. ``prompt`` may be empty (a reward that scores the response alone); the two
responses may not. A further column named by ``group_key`` (e.g. the instruction a pair answers)
labels each pair's group, so accuracy can be reported per group; every record must then have it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from remax_ray.assets.corpora import prepare_movie_pairs
from remax_ray.assets.home import BUILTIN_PREFIX, MOVIE_PAIRS, STEERED_PAIRS
from remax_ray.assets.steered import prepare_steered_pairs

_FIELDS = ("prompt", "chosen", "rejected")
_BUILTIN = {MOVIE_PAIRS: prepare_movie_pairs, STEERED_PAIRS: prepare_steered_pairs}


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    group: str = ""
    """The record's ``group_key`` column ("" when the file is read without one)."""


@dataclass(frozen=True)
class PairSplits:
    train: list[Pair]
    heldout: list[Pair]


def read_pairs_jsonl(path: str | Path, group_key: str = "") -> list[Pair]:
    """Every record of a pairs file; raise ``ValueError`` naming the first bad line and field.

    With ``group_key``, each record's column of that name (a non-empty string) is its group."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist")
    pairs: list[Pair] = []
    # Split on "\n" only (JSON strings may hold U+2028); utf-8-sig drops a Windows byte-order mark.
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object with {', '.join(_FIELDS)}")
        for name in _FIELDS + ((group_key,) if group_key else ()):
            value = record.get(name)
            what = f"field {name!r}" + (" (data.group_key)" if name == group_key else "")
            if not isinstance(value, str):
                problem = "missing" if name not in record else f"not a string ({type(value).__name__})"
                raise ValueError(f"{where}: {what} is {problem}")
            if name != "prompt" and not value.strip():
                raise ValueError(f"{where}: {what} is empty")
        pairs.append(Pair(record["prompt"], record["chosen"], record["rejected"],
                          record[group_key] if group_key else ""))
    if not pairs:
        raise ValueError(f"pairs file {path} has no records")
    return pairs


def resolve_pairs(spec: str, log=print) -> Path:
    """The jsonl file behind ``spec``; a builtin is built on first use (seconds)."""
    if not spec.startswith(BUILTIN_PREFIX):
        return Path(spec)
    build = _BUILTIN.get(spec[len(BUILTIN_PREFIX):])
    if build is None:
        raise ValueError(f"unknown builtin pairs {spec!r}; known: "
                         + ", ".join(BUILTIN_PREFIX + name for name in _BUILTIN))
    return build(log) / "pairs.jsonl"


def split_pairs(pairs: list[Pair], heldout_fraction: float, seed: int, max_pairs: int = 0) -> PairSplits:
    """Seeded, disjoint train / held-out split; ``max_pairs`` (0 = all) caps the training part."""
    order = list(range(len(pairs)))
    random.Random(f"pairs-{seed}").shuffle(order)
    n_held = max(1, round(len(pairs) * heldout_fraction))
    train = [pairs[i] for i in order[n_held:]]
    if max_pairs:
        train = train[:max_pairs]
    if not train:
        raise ValueError(f"{len(pairs)} pairs leave none for training after holding out {n_held}")
    return PairSplits(train, [pairs[i] for i in order[:n_held]])


def load_pair_splits(spec: str, heldout_fraction: float, seed: int, max_pairs: int = 0,
                     log=print, group_key: str = "") -> PairSplits:
    """Read ``spec`` (a file or a builtin) and split it (see :func:`split_pairs`)."""
    return split_pairs(read_pairs_jsonl(resolve_pairs(spec, log), group_key), heldout_fraction, seed,
                       max_pairs)
