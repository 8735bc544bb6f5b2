"""The step-time model (bench/step_model.py: a model behind docs/PERFORMANCE.md, not library code) on
hand-computed values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from step_model import Phases, learn_seconds, ring_allreduce_seconds, step_seconds  # noqa: E402

P = Phases(generate=2.0, score=0.5, learn=6.0, sync=0.5, other=0.1)


def test_without_overlap_the_phases_add_up() -> None:
    assert step_seconds(P, overlap=False, separate=True) == pytest.approx(9.1)
    assert step_seconds(P, overlap=False, separate=False) == pytest.approx(9.1)


def test_overlap_on_devices_of_their_own_hides_the_shorter_phase() -> None:
    assert step_seconds(P, overlap=True, separate=True) == pytest.approx(0.5 + 6.0 + 0.5 + 0.1)
    fast_learner = Phases(generate=5.0, score=0.5, learn=1.0, sync=0.5)
    assert step_seconds(fast_learner, overlap=True, separate=True) == pytest.approx(6.0)


def test_overlap_on_shared_cores_saves_nothing() -> None:
    assert step_seconds(P, overlap=True, separate=False) == step_seconds(P, overlap=False, separate=False)


def test_learner_ranks_split_the_compute_and_add_the_all_reduce() -> None:
    assert learn_seconds(6.0, 1, allreduce_s=9.0) == 6.0  # one rank: nothing to reduce
    assert learn_seconds(6.0, 4, allreduce_s=0.25) == pytest.approx(1.75)
    # 4 ranks: 2 * 3/4 of 1 GB at 10 GB/s
    assert ring_allreduce_seconds(1e9, 4, 10e9) == pytest.approx(0.15)
    assert ring_allreduce_seconds(1e9, 1, 10e9) == 0.0
    # With 3 ranks the learner (2 + 0.1) is shorter than generation (2.0)? No: 2.1 > 2.0.
    assert step_seconds(P, overlap=True, separate=True, ranks=3, allreduce_s=0.1) == pytest.approx(0.5 + 2.1 + 0.6)
