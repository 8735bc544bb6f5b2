"""``remax-ray eval``'s arguments: which models a call names (a run folder stands for its
checkpoints), which config it evaluates with, where it writes, and the table it prints. The
evaluation itself is the trainer's (tests/unit/test_samples.py); the command end to end, with Ray
and vLLM, is in tests/integration/test_arithmetic_run.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from remax_ray import cli
from remax_ray.config import ConfigError, load_config
from remax_ray.driver.eval_command import config_file, default_out, expand, format_table, split_items, with_model


def _run(tmp_path: Path, steps: list[int]) -> Path:
    run = tmp_path / "run"
    for step in steps:
        folder = run / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True)
        (folder / "run_state.json").write_text("{}")
        (folder / "config.yaml").write_text(f"run:\n  dataset: data-{step}.jsonl\n")
    (run / "checkpoints" / "latest").write_text(f"step-{steps[-1]:06d}\n")
    return run


def test_items_split_into_models_and_overrides() -> None:
    assert split_items(["runs/a", "builtin:tiny", "run.eval_prompts=64", "reward.kind=vader", "x=1"]) == (
        ["runs/a", "builtin:tiny", "x=1"], ["run.eval_prompts=64", "reward.kind=vader"])


def test_a_run_folder_stands_for_its_checkpoints_oldest_first(tmp_path: Path) -> None:
    run = _run(tmp_path, [10, 2])
    ckpts = [str(run / "checkpoints" / "step-000002"), str(run / "checkpoints" / "step-000010")]
    assert expand([str(run), "builtin:smollm2-135m-instruct"]) == [*ckpts, "builtin:smollm2-135m-instruct"]
    assert expand([ckpts[1]]) == [ckpts[1]]
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="a run folder without checkpoints"):
        expand([str(tmp_path / "empty")])


def test_config_and_output_follow_the_first_checkpoint(tmp_path: Path) -> None:
    run = _run(tmp_path, [2, 4])
    models = expand(["builtin:tiny", str(run)])
    assert config_file(models, None) == str(run / "checkpoints" / "step-000002" / "config.yaml")
    assert load_config(config_file(models, None)).run.dataset == "data-2.jsonl"  # what the run trained on
    assert config_file(models, "mine.yaml") == "mine.yaml"
    assert config_file(["builtin:tiny"], None) is None  # the embedded default
    assert default_out(models) == run / "eval"
    assert default_out([str(run / "checkpoints" / "step-000004")]) == run / "eval"
    assert default_out(["builtin:tiny"]) == Path("runs/eval")
    assert with_model(load_config(None), "some/model").model.path == "some/model"


def test_table() -> None:
    rows = [{"model": "runs/x/checkpoints/step-000002", "greedy_reward": 0.125, "sample_reward": 0.0625, "valid": 32},
            {"model": "base", "greedy_reward": -1.0, "sample_reward": None, "valid": 30}]
    assert format_table(rows, 4).splitlines() == [
        "model                             greedy   sampled (n=4)  prompts",
        "runs/x/checkpoints/step-000002    0.1250          0.0625       32",
        "base                             -1.0000               -       30"]


def test_bad_arguments_fail_before_anything_starts(tmp_path: Path, capsys) -> None:
    assert cli.main(["eval", "run.eval_prompts=4"]) == 2
    assert "name at least one model" in capsys.readouterr().err
    assert cli.main(["eval", "builtin:tiny", "run.eval_promts=4"]) == 2
    assert "did you mean 'run.eval_prompts'" in capsys.readouterr().err
    assert cli.main(["eval", "builtin:tiny", "--samples", "-1"]) == 2
    assert "--samples must be >= 0" in capsys.readouterr().err
