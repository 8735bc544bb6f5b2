"""Fixtures shared by the bad-input tests: a tiny model folder and a six-prompt dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def model_dir(tiny_model: Path) -> Path:
    return tiny_model


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"the movie {i} was"}) + "\n" for i in range(6)))
    return path
