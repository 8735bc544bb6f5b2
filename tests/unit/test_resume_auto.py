"""``remax-ray train --resume auto``: the newest complete checkpoint of run.output_dir if there is one,
else a fresh run. The CLI runs with a recording Trainer in place of the real one (nothing starts Ray);
the fresh start over an earlier attempt's files goes through the real ``initial_state``."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import pytest

from remax_ray import cli
from remax_ray.config import ConfigError, load_config
from remax_ray.driver import prepare
from remax_ray.driver.resume import auto_start, initial_state
from remax_ray.learner import checkpoint
from remax_ray.monitor import console


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """What each Trainer the CLI builds was given; the trainer module is a stand-in, so that
    ``from remax_ray.driver.trainer import ...`` inside ``cli.main`` imports neither Ray nor vLLM."""
    calls: list[dict] = []

    class Trainer:
        def __init__(self, cfg, *, resume=None, overwrite=False):
            calls.append({"output_dir": cfg.run.output_dir, "resume": resume, "overwrite": overwrite})

        def fit(self) -> dict:
            return {"steps": 0}

        def shutdown(self) -> None:
            pass

    fake = types.ModuleType("remax_ray.driver.trainer")
    fake.Trainer, fake.RunFailed = Trainer, type("RunFailed", (Exception,), {})
    monkeypatch.setitem(sys.modules, "remax_ray.driver.trainer", fake)
    monkeypatch.setattr(prepare, "prepare_builtins_for_config", lambda cfg: None)
    monkeypatch.setattr(console, "quiet_actors", lambda verbose=False: None)  # keeps os.environ as it is
    return calls


def _checkpoint(out: Path, step: int) -> Path:
    """A complete checkpoint as the learner publishes it: the folder renamed in, then ``latest``."""
    folder = checkpoint.step_folder(out, step)
    checkpoint.write_atomically(folder, lambda tmp: (tmp / checkpoint.LEARNER_STATE).write_text("learner"))
    checkpoint.set_latest(folder)
    return folder


def _train(out: Path, *flags: str) -> int:
    return cli.main(["train", *flags, f"run.output_dir={out}"])


def test_a_fresh_folder_starts_a_fresh_run(tmp_path, started, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="remax_ray"):
        assert _train(out, "--resume", "auto") == 0
    assert started == [{"output_dir": str(out), "resume": None, "overwrite": False}]
    assert [r.message for r in caplog.records if "resume auto" in r.message] == [
        f"resume auto: no checkpoint in {out}; starting a fresh run"]


def test_a_folder_with_a_checkpoint_is_resumed_as_latest_would_be(tmp_path, started, caplog):
    out = tmp_path / "run"
    _checkpoint(out, 2)
    newest = _checkpoint(out, 4)
    (out / "metrics.jsonl").write_text("{}\n")
    with caplog.at_level(logging.INFO, logger="remax_ray"):
        assert _train(out, "--resume", "auto") == 0
    # The Trainer gets exactly what --resume latest gives it, so the same checkpoint and config checks.
    assert started == [{"output_dir": str(out), "resume": "latest", "overwrite": False}]
    assert checkpoint.resolve("latest", out) == newest
    assert any(r.message == f"resume auto: continuing from step-000004, the newest complete checkpoint in {out}"
               for r in caplog.records)
    assert _train(out, "--resume", "latest") == 0
    assert started[1] == started[0]


def test_a_half_written_checkpoint_is_not_resumed(tmp_path, started):
    """Only a folder ``latest`` names is complete; a staging folder a killed learner left is not."""
    out = tmp_path / "run"
    (checkpoint.root(out) / ".tmp-step-000002.ranks").mkdir(parents=True)
    assert _train(out, "--resume", "auto") == 0
    assert started[0]["resume"] is None


def test_what_an_attempt_without_a_checkpoint_left_is_started_over(tmp_path, started, caplog):
    """A driver that died before its first checkpoint left metrics and nothing to continue: the next
    attempt starts fresh over them instead of refusing the folder (which every retry would repeat)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    with caplog.at_level(logging.INFO, logger="remax_ray"):
        assert _train(out, "--resume", "auto") == 0
    assert started == [{"output_dir": str(out), "resume": None, "overwrite": True}]
    assert any("deleting metrics.jsonl" in r.message and r.levelno == logging.WARNING for r in caplog.records)
    # The real start of a run does delete them with that overwrite (and refuses the folder without it).
    cfg = load_config(None, [f"run.output_dir={out}"])
    splits = types.SimpleNamespace(train=list(range(64)))  # only its length orders the prompts
    with pytest.raises(ConfigError, match="already holds a run"):
        initial_state(cfg, "policy", splits, None, False, overlap=False)
    initial_state(cfg, "policy", splits, None, auto_start(out)[1], overlap=False)
    assert not (out / "metrics.jsonl").exists()


def test_auto_with_overwrite_is_one_clear_error_before_anything_starts(tmp_path, started, capsys):
    out = tmp_path / "run"
    _checkpoint(out, 2)
    assert _train(out, "--resume", "auto", "--overwrite") == 2
    err = capsys.readouterr().err
    assert err.startswith("remax-ray: configuration error: --resume auto and --overwrite contradict")
    assert started == [] and checkpoint.latest(checkpoint.root(out)) is not None  # nothing deleted


def test_auto_reads_the_commands_config_like_latest(tmp_path, started):
    """auto and latest find run.output_dir in the command's config (--config, --task, overrides), never
    in a checkpoint's; a checkpoint or run folder named by path still brings its own config."""
    args = cli._parser().parse_args(["train", "--resume", "auto"])
    assert cli._config_file(args) is None
    path = tmp_path / "job.yaml"
    path.write_text(f"run:\n  output_dir: {tmp_path / 'from-file'}\n")
    assert cli.main(["train", "--config", str(path), "--resume", "auto"]) == 0
    assert started[0]["output_dir"] == str(tmp_path / "from-file") and started[0]["resume"] is None
