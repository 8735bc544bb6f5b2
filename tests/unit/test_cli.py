"""Tests for remax_ray.cli.main: argument and configuration errors, ``keys``; nothing starts Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from remax_ray.cli import main
from remax_ray.config import config_keys


def test_unknown_key_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "algo.kl_coeff=1"]) == 2
    out, err = capsys.readouterr()
    assert "did you mean 'algo.kl_coef'?" in err
    assert err.startswith("remax-ray: configuration error:")
    assert out == ""


def test_wrong_type_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "run.steps=many"]) == 2
    err = capsys.readouterr().err
    assert "run.steps: expected int, got 'many'" in err


def test_float_for_int_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "learner.micro_batch_size=1.5"]) == 2
    assert "learner.micro_batch_size: expected int" in capsys.readouterr().err


def test_cross_field_error(capsys: pytest.CaptureFixture[str]) -> None:
    # 6 prompts * 1 sample = 6 sequences; 6 % 4 = 2 -> not divisible into micro-batches of 4.
    assert main(["train", "run.prompts_per_step=6", "learner.micro_batch_size=4"]) == 2
    assert "(6 * 1 = 6) must be divisible by learner.micro_batch_size (4)" in capsys.readouterr().err


def test_malformed_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "kl_coef=0.1"]) == 2
    assert "must look like section.key=value" in capsys.readouterr().err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["train", "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "cannot read config file" in err and str(missing) in err


def test_bad_key_in_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("algo:\n  kl_coeff: 0.1\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "did you mean 'algo.kl_coef'?" in err


def test_keys_lists_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "algo.kl_coef" in lines
    # Every key on its own line, each followed by an indented help line.
    keys = [line for line in lines if not line.startswith(" ")]
    assert keys == config_keys()
    i = lines.index("algo.kl_coef")
    assert lines[i + 1].startswith("    ") and "KL" in lines[i + 1]


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "usage: remax-ray" in capsys.readouterr().err
