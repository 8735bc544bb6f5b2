"""Comparison pairs for reward-model training: a jsonl file, or the builtin movie-snippet pairs.

A record is ``{"prompt": str, "chosen": str, "rejected": str}``: ``chosen`` is the preferred
response to ``prompt``. Unlike prompt files, a pairs file is read strictly: a bad line is an error
that names the line, because a silently dropped or mislabelled comparison trains the reward the
wrong way round. ``prompt`` may be empty (a reward that scores the response alone); the two
responses may not.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from remax_ray.assets.corpora import prepare_movie_pairs
from remax_ray.assets.home import BUILTIN_PREFIX, MOVIE_PAIRS

_FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class PairSplits:
    train: list[Pair]
    heldout: list[Pair]


def read_pairs_jsonl(path: str | Path) -> list[Pair]:
    """Every record of a pairs file; raise ``ValueError`` naming the first bad line and field."""
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
        for name in _FIELDS:
            value = record.get(name)
            if not isinstance(value, str):
                problem = "missing" if name not in record else f"not a string ({type(value).__name__})"
                raise ValueError(f"{where}: field {name!r} is {problem}")
            if name != "prompt" and not value.strip():
                raise ValueError(f"{where}: field {name!r} is empty")
        pairs.append(Pair(record["prompt"], record["chosen"], record["rejected"]))
    if not pairs:
        raise ValueError(f"pairs file {path} has no records")
    return pairs


def resolve_pairs(spec: str, log=print) -> Path:
    """The jsonl file behind ``spec``; ``builtin:movie-pairs`` is built on first use (seconds)."""
    if not spec.startswith(BUILTIN_PREFIX):
        return Path(spec)
    if spec != BUILTIN_PREFIX + MOVIE_PAIRS:
        raise ValueError(f"unknown builtin pairs {spec!r}; known: {BUILTIN_PREFIX}{MOVIE_PAIRS}")
    return prepare_movie_pairs(log) / "pairs.jsonl"


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
                     log=print) -> PairSplits:
    """Read ``spec`` (a file or a builtin) and split it (see :func:`split_pairs`)."""
    return split_pairs(read_pairs_jsonl(resolve_pairs(spec, log)), heldout_fraction, seed, max_pairs)
