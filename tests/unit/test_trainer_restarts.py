"""One recovery budget per call, the driver's checks after a sync (run.check_sync) and learner restarts from the newest checkpoint
(run.max_learner_restarts), on the fake actors of test_trainer_failures.py (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.exceptions import ActorDiedError

import test_trainer_failures as failures
from remax_ray.driver import trainer as trainer_module
from remax_ray.driver.trainer import RunFailed

FakeActor, _Method, _records, _save = failures.FakeActor, failures._Method, failures._records, failures._save
make = failures.make  # the fixture that builds a Trainer on fake actors


def _new_learner(trained: list[list[str]]) -> FakeActor:
    """The learner a restart starts: it records each step's prompts and returns loss 0.25."""
    return FakeActor("learner-2", train_step=lambda rollouts: trained.append([r.prompt for r in rollouts])
                     or {"loss": 0.25}, weight_buckets=lambda mb, dtype: 1, node_id=lambda: "learner-node",
                     export_bucket=lambda k, mb, dtype: b"w",
                     save=lambda folder, state, cfg_yaml, keep: _save(folder, state))


@pytest.mark.parametrize("logp_diff, check, stops", [(0.02, "true", True), (0.02, "false", False),
                                                     (1e-5, "true", False)])
def test_a_sync_the_engines_do_not_serve_stops_the_run_naming_the_architecture(make, logp_diff, check, stops):
    """The first step sampled after a sync (the fakes' generators loaded the constructor's sync):
    a logp_diff far above a float32 engine's noise means the engine serves other weights."""
    from remax_ray.driver.trainer import SyncMismatch

    t = make(f"run.check_sync={check}")
    t.actors.learner.train_step = _Method(lambda rollouts: {"loss": 0.0, "logp_diff": logp_diff})
    if not stops:
        assert t.step()["logp_diff"] == logp_diff and t.step()
        return
    with pytest.raises(SyncMismatch, match=r"LlamaForCausalLM .*run.check_sync=false"):
        t.step()
    assert t.step_idx == 1 and _records(t)[-1]["logp_diff"] == logp_diff  # recorded before stopping


def test_a_dead_learner_is_started_again_from_the_newest_checkpoint(make, monkeypatch):
    """Step 2's update finds the learner dead: the driver starts a new learner from step 1's
    checkpoint, cuts the metrics back to it, re-syncs and trains step 2 again with the same prompts;
    every step is recorded once and the restart is counted."""
    t = make("run.save_every=1", "run.steps=3", "run.eval_every=0")
    first = t.actors.learner
    death = ActorDiedError()
    death.actor_id = "learner"
    calls = {"n": 0}

    def dies_at_step_2(rollouts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise death
        return {"loss": 0.5}

    first.train_step = _Method(dies_at_step_2)
    trained: list[list[str]] = []
    started: list[str] = []

    def start_learner(cfg, model_path, device, wait=True, *, reference_path, resume_from, where):
        started.append(Path(resume_from).name)
        return _new_learner(trained)

    monkeypatch.setattr(trainer_module, "start_learner", start_learner)
    t.fit()
    assert first.killed and started == ["step-000002"] and trained[0] == t._prompts(2)  # same prompts
    steps = [r for r in _records(t) if "loss" in r]
    assert [r["step"] for r in steps] == [0, 1, 2] and steps[-1]["loss"] == 0.25
    assert steps[-1]["learner_restarts"] == 1.0 and steps[0]["learner_restarts"] == 0.0


def test_a_dead_learner_without_a_checkpoint_starts_the_run_again_from_model_path(make, monkeypatch):
    """run.save_every=0 (the default): no checkpoint before the end. A learner death at step 2 starts
    new ranks from model.path (no resume), cuts the metrics back to the first evaluation and trains
    steps 1 and 2 again with the same prompts."""
    t = make("run.save_every=0", "run.steps=2", "run.eval_every=0")
    first = t.actors.learner
    death = ActorDiedError()
    death.actor_id = "learner"
    first.train_step = _Method(lambda rollouts: (_ for _ in ()).throw(death) if t.step_idx == 1 else {"loss": 0.5})
    trained: list[list[str]] = []
    started: list = []

    def start_learner(cfg, model_path, device, wait=True, *, reference_path, resume_from, where):
        started.append((model_path, resume_from))
        return _new_learner(trained)

    monkeypatch.setattr(trainer_module, "start_learner", start_learner)
    t.fit()
    assert first.killed and started == [(t.model_path, None)]
    assert trained == [t._prompts(0), t._prompts(1)]  # both steps again, the same prompts
    steps = [r for r in _records(t) if "loss" in r]
    assert [r["step"] for r in steps] == [0, 1] and all(r["loss"] == 0.25 for r in steps)
    assert steps[-1]["learner_restarts"] == 1.0


def test_a_learner_death_with_no_restarts_left_stops_the_run(make):
    for overrides in (("run.save_every=0", "run.max_learner_restarts=0"),
                      ("run.save_every=1", "run.max_learner_restarts=0")):
        t = make(*overrides, "run.steps=3", "run.eval_every=0", overwrite=True)
        death = ActorDiedError()
        death.actor_id = "learner"
        t.actors.learner.train_step = _Method(lambda rollouts: (_ for _ in ()).throw(death)
                                              if t.step_idx == 1 else {"loss": 0.5})
        with pytest.raises(RunFailed, match="ActorDiedError"):
            t.fit()


def test_nested_recoveries_share_one_budget_per_call(make):
    """A generator that never takes the weights (restarted at every sync, say) is recovered from
    run.step_retries times in all, then the step fails: the retry loops of the step, of generate and
    of a batch generated ahead do not multiply into (R + 1)(R + 2) attempts."""
    from remax_ray.driver.recovery import StaleWeights

    t = make("run.step_retries=2")
    gen = t.actors.generators[0]
    gen.load_weight_refs = _Method(lambda *args, **kwargs: {"sync_bytes": 1.0})  # loads nothing
    gen.engine.version = 0  # restarted: serves model.path
    before = gen.calls.get("generate", 0)
    with pytest.raises(StaleWeights, match="served weights of sync"):
        t.step()
    assert gen.calls["generate"] - before == 3 and t.state.counters["generator_resyncs"] == 2
    with pytest.raises(StaleWeights):  # evaluate -> generate: nested, still one budget
        t.evaluate()
    assert gen.calls["generate"] - before == 6


