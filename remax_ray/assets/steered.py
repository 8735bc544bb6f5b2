"""The instruction-conditioned movie-review task: ``builtin:steered-reviews`` (prompts) and
``builtin:steered-pairs`` (the comparison pairs of ``builtin:steered-rm``).

A prompt asks for a positive or a negative continuation of a review opening, as plain text that the
policy continues (no chat template, like ``builtin:movie-reviews``)::

    {"prompt": "Continue this movie review in a negative tone.\\nReview: Girl 6 is, in a word, a mess. i",
     "instruction": "negative"}

The openings and their train/held-out split are ``builtin:movie-reviews``'s, read from its files. A
pair puts a Pang & Lee snippet of the instructed sentiment (chosen) against one of the other
(rejected) after such a prompt (the snippet couples of ``builtin:movie-pairs``), so which response
wins depends on the prompt: a reward model fit on them must read the instruction, and its score of
a prompt carries an offset that Bradley-Terry leaves free, which ReMax's greedy baseline is there to
cancel.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from remax_ray.assets.corpora import prepare_movie_pairs, prepare_movie_reviews
from remax_ray.assets.home import STEERED_PAIRS, STEERED_REVIEWS, assets_home, atomic_publish, seed_from_prebuilt

POSITIVE, NEGATIVE = "positive", "negative"
INSTRUCTIONS = (POSITIVE, NEGATIVE)
PROMPT = "Continue this movie review in a {instruction} tone.\nReview: {opening}"


def steered_prompt(instruction: str, opening: str) -> str:
    return PROMPT.format(instruction=instruction, opening=opening)


def steered_rows(openings: list[str]) -> list[dict[str, str]]:
    """Every opening twice, once with each instruction, its two rows adjacent.

    Both instructions on every opening, so a policy cannot score by the opening alone and the
    held-out set compares the two on the same reviews. Adjacent, because a run evaluates the first
    ``run.eval_prompts`` held-out rows: any even prefix is exactly balanced. The instruction that
    comes first alternates, so odd prefixes are off by one at most.
    """
    rows = []
    for i, opening in enumerate(openings):
        for instruction in (INSTRUCTIONS if i % 2 == 0 else INSTRUCTIONS[::-1]):
            rows.append({"prompt": steered_prompt(instruction, opening), "instruction": instruction})
    return rows


def _jsonl(file: Path) -> list[dict]:
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def _openings(file: Path) -> list[str]:
    return [row["prompt"] for row in _jsonl(file)]


def prepare_steered_reviews(log=print) -> Path:
    """``builtin:steered-reviews``: ``train.jsonl`` and ``eval.jsonl`` from the openings of the same
    splits of ``builtin:movie-reviews`` (built first if missing)."""
    out = assets_home() / STEERED_REVIEWS
    if seed_from_prebuilt(STEERED_REVIEWS, "eval.jsonl"):
        return out
    reviews = prepare_movie_reviews(log)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    counts = {}
    for split in ("train", "eval"):
        rows = steered_rows(_openings(reviews / f"{split}.jsonl"))
        counts[split] = len(rows)
        (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    atomic_publish(tmp, out)
    log(f"steered movie-review prompts: {counts['train']} train, {counts['eval']} held-out -> {out}")
    return out


def steered_pairs(openings: list[str], movie_pairs: list[dict[str, str]], seed: int = 0) -> list[dict[str, str]]:
    """Pair ``i`` is ``movie_pairs[i]`` (a positive and a negative snippet) after an instruction: the
    instruction alternates (balanced), the snippet it asks for is chosen, and the opening cycles
    through a seeded shuffle of ``openings``. Responses begin with a space, as a continuation of the
    opening does.

    Index for index, so a seeded split of these pairs holds out the very snippets that the same
    split of ``builtin:movie-pairs`` holds out: ``builtin:steered-rm`` starts from
    ``builtin:sentiment-rm``, and neither has seen a held-out snippet.
    """
    order = list(openings)
    random.Random(seed).shuffle(order)
    pairs = []
    for i, pair in enumerate(movie_pairs):
        instruction = INSTRUCTIONS[i % 2]
        good, bad = pair["chosen"], pair["rejected"]
        chosen, rejected = (good, bad) if instruction == POSITIVE else (bad, good)
        pairs.append({"prompt": steered_prompt(instruction, order[i % len(order)]),
                      "chosen": " " + chosen, "rejected": " " + rejected, "instruction": instruction})
    return pairs


def prepare_steered_pairs(log=print) -> Path:
    """``builtin:steered-pairs``: ``pairs.jsonl`` from ``builtin:movie-pairs`` and the training
    openings of ``builtin:movie-reviews`` (its held-out openings stay unseen by the reward model)."""
    out = assets_home() / STEERED_PAIRS
    if seed_from_prebuilt(STEERED_PAIRS, "pairs.jsonl"):
        return out
    openings = _openings(prepare_movie_reviews(log) / "train.jsonl")
    pairs = steered_pairs(openings, _jsonl(prepare_movie_pairs(log) / "pairs.jsonl"))
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    (tmp / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    atomic_publish(tmp, out)
    log(f"steered snippet pairs: {len(pairs)} -> {out}")
    return out
