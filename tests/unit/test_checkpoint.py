"""Checkpoint folders: atomic writes, the latest pointer, keep-last-K, and what --resume resolves to."""

from __future__ import annotations

from pathlib import Path

import pytest

from remax_ray.learner import checkpoint as ck


def _write(step: int, out: Path, keep: int = 0) -> Path:
    folder = ck.step_folder(out, step)

    def write(tmp: Path) -> None:
        (tmp / ck.LEARNER_STATE).write_text(f"state {step}")

    ck.write_atomically(folder, write)
    ck.set_latest(folder)
    ck.prune(folder.parent, keep)
    return folder


def test_a_crash_while_writing_leaves_the_previous_checkpoint_latest_and_whole(tmp_path):
    first = _write(1, tmp_path)

    def crash(tmp: Path) -> None:
        (tmp / ck.LEARNER_STATE).write_text("half")
        raise KeyboardInterrupt  # a signal in the middle of torch.save

    with pytest.raises(KeyboardInterrupt):
        ck.write_atomically(ck.step_folder(tmp_path, 2), crash)
    assert not ck.step_folder(tmp_path, 2).exists()
    assert ck.latest(ck.root(tmp_path)) == first
    assert (first / ck.LEARNER_STATE).read_text() == "state 1"
    assert not list(ck.root(tmp_path).glob(".tmp-*"))  # the half-written copy was removed


def test_a_killed_writer_leaves_a_temp_folder_that_the_next_save_prunes(tmp_path):
    _write(1, tmp_path)
    (ck.root(tmp_path) / ".tmp-step-000002.abc").mkdir()  # SIGKILL mid-write: no cleanup ran
    assert ck.resolve("latest", tmp_path) == ck.step_folder(tmp_path, 1)
    _write(2, tmp_path)
    assert not list(ck.root(tmp_path).glob(".tmp-*"))


def test_keep_last_k_never_deletes_latest(tmp_path):
    for step in range(1, 6):
        _write(step, tmp_path, keep=2)
    assert [p.name for p in ck.step_folders(ck.root(tmp_path))] == ["step-000004", "step-000005"]
    assert ck.latest(ck.root(tmp_path)).name == "step-000005"


def test_an_existing_step_folder_is_kept_not_replaced(tmp_path):
    folder = _write(3, tmp_path)
    ck.write_atomically(folder, lambda tmp: (tmp / ck.LEARNER_STATE).write_text("other"))
    assert (folder / ck.LEARNER_STATE).read_text() == "state 3"


def test_resolve_latest_run_folder_and_checkpoint_folder(tmp_path):
    _write(2, tmp_path)
    newest = _write(4, tmp_path)
    assert ck.resolve("latest", tmp_path) == newest
    assert ck.resolve(str(tmp_path), tmp_path / "elsewhere") == newest  # a run folder
    assert ck.resolve(str(ck.root(tmp_path)), tmp_path) == newest  # its checkpoints folder
    assert ck.resolve(str(ck.step_folder(tmp_path, 2)), tmp_path) == ck.step_folder(tmp_path, 2)


@pytest.mark.parametrize("spec", ["latest", "nowhere"])
def test_resolve_names_what_it_looked_at(tmp_path, spec):
    with pytest.raises(ck.ResumeError, match="--resume"):
        ck.resolve(spec if spec == "latest" else str(tmp_path / spec), tmp_path)


def test_resuming_from_an_older_checkpoint_discards_the_abandoned_later_ones(tmp_path):
    two, _ = _write(2, tmp_path), _write(4, tmp_path)
    assert ck.discard_after(two) == [ck.step_folder(tmp_path, 4)]
    assert ck.latest(ck.root(tmp_path)) == two
    assert not ck.step_folder(tmp_path, 4).exists()
