"""Which runs ``remax-ray repro`` makes, and the input errors it reports before any actor starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from remax_ray.cli import main
from remax_ray.config import ConfigError, apply_overrides, load_config
from remax_ray.repro.plan import (
    DEFAULT_ALGOS,
    DEFAULT_SEEDS,
    PlannedRun,
    check_shared_actors,
    parse_algos,
    parse_seeds,
    plan_runs,
    task_base,
)
from remax_ray.repro.tasks import parse_tasks


def test_parse_algos_seeds_and_tasks():
    assert parse_algos("remax, ppo,reinforce_mean") == ["remax", "ppo", "reinforce_mean"]
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("5") == [5]  # one seed now, more in a later sitting
    assert DEFAULT_ALGOS == ("remax", "ppo", "reinforce", "rloo", "reinforce_mean")
    assert DEFAULT_SEEDS == (0, 1, 2, 3, 4)
    assert parse_tasks("sentiment") == ["sentiment"]
    with pytest.raises(ConfigError, match=r"unknown algorithm\(s\) 'ppo2'.*valid: remax"):
        parse_algos("remax,ppo2")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_algos("remax,remax")
    for bad in ("", "1,1", "a,b", "-1,2"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match=r"--tasks: unknown task\(s\) 'nope'"):
        parse_tasks("sentiment,nope")


def test_task_base_sets_the_evaluation_the_verdicts_need():
    base = task_base(None, "sentiment", [])
    assert base.run.eval_prompts == 64 and base.run.eval_samples == 4
    assert task_base(None, "sentiment", ["run.eval_samples=2"]).run.eval_samples == 2  # yours win


def test_plan_sets_estimator_seed_folder_and_group_samples(tmp_path: Path):
    base = load_config(None, ["run.prompts_per_step=4", "learner.micro_batch_size=4", "learner.lr=3e-5"])
    runs = plan_runs({"sentiment": base}, ["remax", "ppo", "rloo"], [0, 1], tmp_path)
    assert [r.name for r in runs] == ["remax-seed0", "ppo-seed0", "rloo-seed0",
                                      "remax-seed1", "ppo-seed1", "rloo-seed1"]
    for r in runs:
        assert r.cfg.algo.estimator == r.algo and r.cfg.run.seed == r.seed
        assert r.folder == tmp_path / "sentiment" / r.name and r.label == f"sentiment/{r.name}"
        assert r.cfg.run.prompts_per_step == 4  # same prompts per step for every algorithm
        assert r.cfg.learner.lr == 3e-5  # and the same learning rate
    rloo = runs[2]
    assert rloo.cfg.rollout.samples_per_prompt == 2 and "rollout.samples_per_prompt=2" in rloo.overrides
    assert runs[0].cfg.rollout.samples_per_prompt == 1 and runs[0].overrides == ("algo.estimator=remax",)


def test_plan_reports_which_derived_run_is_invalid(tmp_path: Path):
    # Several PPO epochs are valid for PPO only: the derived remax run must say so by name.
    base = load_config(None, ["algo.estimator=ppo", "algo.epochs=2"])
    with pytest.raises(ConfigError, match=r"sentiment/remax \(seed 0\): .*on-policy"):
        plan_runs({"sentiment": base}, ["ppo", "remax"], [0, 1], tmp_path)


def test_shared_actor_settings_must_match(tmp_path: Path):
    base = load_config(None)
    other = apply_overrides(base, ["rollout.max_new_tokens=7"])
    runs = [PlannedRun("t", "remax", 0, base, ()), PlannedRun("t", "ppo", 0, other, ())]
    with pytest.raises(ConfigError, match="t/ppo-seed0: generator/reward settings differ"):
        check_shared_actors(runs)
    # samples_per_prompt is an argument of each generate() call, not an engine setting.
    check_shared_actors([runs[0], PlannedRun("t", "rloo", 0, apply_overrides(base, ["rollout.samples_per_prompt=2"]), ())])


@pytest.mark.parametrize("argv, message", [
    (["repro", "--algos", "remax,foo"], "unknown algorithm(s) 'foo'"),
    (["repro", "--seeds", "0,0"], "need distinct seeds"),
    (["repro", "--tasks", "nope"], "unknown task(s) 'nope'"),
    (["repro", "algo.kl_coeff=1"], "did you mean 'algo.kl_coef'?"),
    (["repro", "--report-only", "run.steps=3"], "--report-only renders the stored runs"),
    (["repro", "--algos", "rloo", "run.prompts_per_step=3", "learner.micro_batch_size=3",
      "rollout.samples_per_prompt=1"], None),
])
def test_cli_input_errors_exit_2_before_anything_starts(argv, message, tmp_path, capsys, monkeypatch):
    if message is None:  # a valid plan: stop where the actors would start
        import remax_ray.repro.runner as runner

        monkeypatch.setattr(runner, "train_all", lambda *a, **k: (_ for _ in ()).throw(SystemExit(99)))
        monkeypatch.setattr("remax_ray.driver.prepare.prepare_builtins_for_config", lambda *a: None)
        monkeypatch.setattr(runner, "prepare", lambda runs: {"sentiment": "model"})
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--out", str(tmp_path)])
        assert exc.value.code == 99
        return
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("remax-ray: configuration error:") and message in err


def test_report_only_without_stored_runs_exits_2(tmp_path, capsys):
    assert main(["repro", "--report-only", "--out", str(tmp_path)]) == 2
    assert "no complete run" in capsys.readouterr().err


def test_help_shows_the_sittings_and_report_only(capsys):
    with pytest.raises(SystemExit):
        main(["repro", "--help"])
    out = capsys.readouterr().out
    assert "run.steps=10" in out and "--report-only" in out and "--seeds 5,6" in out and "--tasks" in out
