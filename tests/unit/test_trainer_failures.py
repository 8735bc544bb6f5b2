"""The driver's failure handling, without Ray: fake actors whose ``.remote`` returns the value, and
``ray.get`` the identity. Each test scripts one failure and checks what the trainer does about it."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from pathlib import Path

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from remax_ray.cluster.actors import Actors
from remax_ray.config import ConfigError, load_config
from remax_ray.data.rollouts import Completion, PromptRollout
from remax_ray.driver import trainer as trainer_module
from remax_ray.driver.trainer import RunFailed, Trainer
from remax_ray.learner.checkpoint import ResumeError


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


class FakeActor:
    """``failures[name]``: exceptions raised by the next calls of method ``name``, in order."""

    def __init__(self, name: str, **methods):
        self.name = name
        self._actor_id = SimpleNamespace(hex=lambda: name)  # what a LearnerGroup reads of its ranks
        self.failures: dict[str, list[Exception]] = {}
        self.calls: dict[str, int] = {}
        for method, fn in {"__ray_ready__": lambda: True, **methods}.items():
            setattr(self, method, _Method(self._wrap(method, fn)))

    def kill(self) -> None:
        self.killed = True

    world_size = 1  # as a one-rank learner group
    def owns(self, actor_id: str | None) -> bool:
        """As the learner group answers: whether an error's actor is this one."""
        return actor_id == self.name

    def _wrap(self, method, fn):
        def call(*args, **kwargs):
            self.calls[method] = self.calls.get(method, 0) + 1
            if self.failures.get(method):
                raise self.failures[method].pop(0)
            return fn(*args, **kwargs)
        return call


class _Died:
    """What a call on an actor that dies returns: ``ray.get`` raises, ``.remote`` does not."""


def _get(refs, timeout=None):
    if any(isinstance(ref, _Died) for ref in (refs if isinstance(refs, list) else [refs])):
        raise ActorDiedError()
    return refs


class FakeEngine:
    """A generator's weights: the version of the last sync it loaded (0: the model it was built
    from, as after a restart), which every response reports. Each call's texts are its own, so a
    test can tell a batch from its regeneration; ``fail_steps``: steps whose generation dies."""

    def __init__(self):
        self.version, self.generated, self.fail_steps = 0, 0, set()
        self.last_batch: dict[int, list[PromptRollout]] = {}  # step -> its latest generation

    def generate(self, prompts, *, n, step, first_index, run_seed, greedy=True):
        if step in self.fail_steps:
            return _Died()
        self.generated += 1
        call = self.generated
        rollouts = [PromptRollout(p, [1, 2], [Completion([3], f"call{call}-s{j}", "length") for j in range(n)],
                                  Completion([4], "g", "length") if greedy else None) for p in prompts]
        for r in rollouts:
            r.weight_version = self.version
        self.last_batch[step] = rollouts
        return rollouts

    def load_weight_refs(self, refs, version=None, first_bucket=0, buckets_in_sync=None):
        if version is not None:  # one bucket per sync here, so each load completes one
            self.version = version
        return {"sync_bytes": 1.0}


def _rewards(nan_prompt: str | None = None):
    return lambda prompts, responses: [math.nan if p == nan_prompt else 1.0 for p in prompts]


@pytest.fixture
def make(tmp_path, tiny_model, prompt_file, monkeypatch):
    monkeypatch.setattr(trainer_module, "connect", lambda cfg, include_dashboard=None: None)
    monkeypatch.setattr(trainer_module.ray, "get", _get)
    monkeypatch.setattr(trainer_module.time, "sleep", lambda s: None)

    def build(*overrides: str, reward=None, **kwargs) -> Trainer:
        cfg = load_config(None, [f"model.path={tiny_model}", f"run.dataset={prompt_file}",
                                 f"run.output_dir={tmp_path / 'run'}", "reward.kind=vader", "run.steps=3",
                                 "run.prompts_per_step=4", "run.eval_prompts=4", "run.progress=false", "learner.micro_batch_size=2",
                                 *overrides])
        learner = FakeActor("learner", train_step=lambda rollouts: {"loss": 0.5, "trained": float(len(rollouts))},
                            weight_buckets=lambda mb, dtype: 1, node_id=lambda: "learner-node",
                            export_bucket=lambda k, mb, dtype: b"w",
                            save=lambda folder, state, cfg_yaml, keep: _save(folder, state))
        engine = FakeEngine()
        gen = FakeActor("generator", generate=engine.generate, load_weight_refs=engine.load_weight_refs,
                  node_id=lambda: "generator-node")
        gen.engine = engine
        rw = FakeActor("reward", score=reward or _rewards())
        return Trainer(cfg, actors=Actors([gen], rw, learner, "cpu", "float32"), **kwargs)

    return build


def _save(folder: str, state: str):
    from pathlib import Path

    from remax_ray.learner import checkpoint

    path = Path(folder)
    def write(tmp):
        (tmp / checkpoint.LEARNER_STATE).write_text("learner")
        (tmp / checkpoint.RUN_STATE).write_text(state)

    checkpoint.write_atomically(path, write)
    checkpoint.set_latest(path)
    return path


def _records(t: Trainer) -> list[dict]:
    return [r for r in t.metrics.read() if "loss" in r or "sync_failed" in r]


def test_a_generator_death_is_retried_after_a_restart_and_a_resync(make):
    t = make()
    gen = t.actors.generators[0]
    gen.failures["generate"] = [ActorDiedError()]
    gen.failures["__ray_ready__"] = [ActorUnavailableError("restarting", None)]  # still coming back up
    syncs = gen.calls["load_weight_refs"]
    rec = t.step()
    assert rec["actor_retries"] == 1 and gen.calls["generate"] == 2 and t.step_idx == 1
    assert gen.calls["load_weight_refs"] == syncs + 2  # the recovery's re-sync, then the step's own


def test_retries_run_out_and_the_message_names_the_checkpoint(make):
    t = make("run.step_retries=1")
    t.actors.reward.failures["score"] = [ActorDiedError(), ActorDiedError()]
    with pytest.raises(RunFailed, match=r"during evaluate.*\n.*--resume .*step-000000") as err:
        t.fit()
    assert "ActorDiedError" in str(err.value)


def test_a_learner_death_is_not_retried(make):
    t = make()
    t.step()
    death = ActorDiedError()
    death.actor_id = "learner"  # what Ray reports: the id of the actor that died
    t.actors.learner.failures["train_step"] = [death]
    with pytest.raises(ActorDiedError):
        t.step()
    assert t.actors.learner.calls["train_step"] == 2 and t.step_idx == 1


def test_a_failed_sync_after_the_update_still_records_and_counts_the_step(make):
    t = make("run.step_retries=0")
    t.actors.learner.failures["export_bucket"] = [ActorUnavailableError("gone", None)]
    with pytest.raises(RunFailed, match="--resume .*step-000001"):
        t.fit()
    (rec,) = _records(t)
    assert rec["sync_failed"] == 1.0 and rec["loss"] == 0.5 and rec["step"] == 0
    assert json.loads((t.out / "checkpoints" / "step-000001" / "run_state.json").read_text())["step"] == 1


def test_invalid_rewards_are_skipped_and_counted_with_on_invalid_skip(make, prompt_file):
    first_prompt = None

    def score(prompts, responses):
        nonlocal first_prompt
        first_prompt = first_prompt or prompts[0]
        return _rewards(first_prompt)(prompts, responses)

    t = make("reward.on_invalid=skip", "rollout.samples_per_prompt=2", reward=score)
    rec = t.step()
    assert rec["trained"] == 3 and rec["skipped_samples"] == 2.0  # the NaN prompt's 2 samples


def test_a_step_whose_every_reward_is_invalid_makes_no_update_but_advances(make):
    t = make("reward.on_invalid=skip", reward=lambda p, r: [math.nan] * len(p))
    rec = t.step()
    assert "loss" not in rec and rec["steps_without_update"] == 1.0 and t.step_idx == 1
    assert "train_step" not in t.actors.learner.calls


def test_a_used_output_folder_is_refused_unless_overwritten(make):
    make().fit()
    with pytest.raises(ConfigError, match="--resume latest.*--overwrite"):
        make()
    t = make(overwrite=True)
    assert t.step_idx == 0 and not (t.out / "checkpoints").exists() and not t.metrics.read()


def test_resume_restores_the_cursor_and_cuts_the_metrics_back(make):
    t = make("run.save_every=1")
    t.fit()
    folder = t.out / "checkpoints" / "step-000001"
    resumed = make("run.save_every=1", resume=str(folder))
    assert resumed.step_idx == 1 and resumed.state.prompts_consumed == 4
    assert [r["step"] for r in _records(resumed)] == [0]  # steps 1 and 2 will run again
    assert not (t.out / "checkpoints" / "step-000002").exists()  # the abandoned continuation
    with pytest.raises(ValueError, match="prompt order would change.*prompts_per_step"):
        make("run.prompts_per_step=2", resume="latest")


def test_overlap_trains_each_batch_one_policy_behind_and_resumes_with_the_pending_batch(make):
    t = make("rollout.overlap=true", "run.save_every=1", "run.steps=3")
    trained: list[list[str]] = []
    t.actors.learner.train_step = _Method(lambda rollouts: trained.append([r.prompt for r in rollouts]) or {"loss": 0.0})
    records = [t.step() for _ in range(2)]
    assert [r["policy_lag"] for r in records] == [0.0, 1.0]
    assert trained == [t._prompts(0), t._prompts(1)]  # the data order is the synchronous one
    assert t._pending[0][0].prompt == t._prompts(2)[0]  # step 2's batch, sampled during step 1
    t.save()
    resumed = make("rollout.overlap=true", "run.save_every=1", "run.steps=3", resume="latest")
    assert [r.prompt for r in resumed._pending[0]] == t._prompts(2) and resumed._pending[1] == 1.0
    generated = resumed.actors.generators[0].calls.get("generate", 0)
    assert resumed.step()["policy_lag"] == 1.0
    assert resumed.actors.generators[0].calls.get("generate", 0) == generated  # nothing regenerated


def test_the_death_of_any_learner_rank_is_a_learner_death(make):
    """With K ranks the error may name rank 1, not rank 0. Under FSDP2 every rank joins the weight
    export, so rank 1 can die in the sync phase: that is a learner death (not retried, the other
    actors not restarted), not a generator's to recover from."""
    from remax_ray.cluster.learner_group import LearnerGroup

    t = make()
    rank1 = FakeActor("learner-1", export_bucket=lambda k, mb, dtype: None)
    t.actors.learner = LearnerGroup([t.actors.learner, rank1], "fsdp")
    death = ActorDiedError()
    death.actor_id = "learner-1"
    rank1.failures["export_bucket"] = [death]
    readies = t.actors.generators[0].calls.get("__ray_ready__", 0)
    with pytest.raises(ActorDiedError):
        t.recovery.attempt("sync", t.sync)
    assert rank1.calls["export_bucket"] == 1  # not retried
    assert t.actors.generators[0].calls.get("__ray_ready__", 0) == readies  # no recovery of the others


def _record_training(t: Trainer) -> list[list[PromptRollout]]:
    trained: list[list[PromptRollout]] = []
    t.actors.learner.train_step = _Method(lambda rollouts: trained.append(list(rollouts)) or {"loss": 0.0})
    return trained


def _versions(batches: list[list[PromptRollout]]) -> list[set[int]]:
    return [{r.weight_version for r in batch} for batch in batches]


def test_a_generator_restarted_between_steps_is_resynced_before_its_responses_are_used(make):
    t = make()
    gen, trained = t.actors.generators[0], _record_training(t)
    t.step()  # generated with sync 1 (the constructor's), then sync 2
    gen.engine.version = 0  # Ray restarted it while idle: it serves model.path, and generate succeeds
    generated, syncs = gen.calls["generate"], gen.calls["load_weight_refs"]
    rec = t.step()
    assert gen.calls["generate"] == generated + 2 and gen.calls["load_weight_refs"] == syncs + 2
    assert _versions(trained) == [{1}, {3}]  # the stale batch was never trained on: sync 3, regenerated
    assert rec["generator_resyncs"] == 1.0 and rec["actor_retries"] == 0.0
    assert t.evaluate() is not None and t.state.counters["generator_resyncs"] == 1.0  # in step now


def test_a_batch_sampled_ahead_by_a_restarted_generator_is_regenerated_after_a_resync(make):
    t = make("rollout.overlap=true", "run.steps=4")
    gen, trained = t.actors.generators[0], []

    def train_step(rollouts):
        trained.append(list(rollouts))
        if len(trained) == 2:  # the generator restarts while the learner runs update 1
            gen.engine.version = 0
        return {"loss": 0.0}

    t.actors.learner.train_step = _Method(train_step)
    records = [t.step() for _ in range(3)]
    # Step 1's batch was sampled ahead with sync 1, one behind by design; step 2's came back from
    # model.path, so it was sampled again after re-sync 3, with the learner's current weights.
    assert [r["policy_lag"] for r in records] == [0.0, 1.0, 0.0]
    assert _versions(trained) == [{1}, {1}, {3}]
    assert [r["generator_resyncs"] for r in records] == [0.0, 1.0, 1.0]


def test_a_failed_generate_ahead_after_the_update_checkpoints_the_step_as_done(make):
    t = make("rollout.overlap=true", "run.step_retries=0")
    t.actors.generators[0].engine.fail_steps = {2}  # step 2's batch, sampled during update 1, dies
    with pytest.raises(RunFailed, match=r"stopped at step 2 .*\n.*--resume .*step-000002"):
        t.fit()
    assert t.actors.learner.calls["train_step"] == 2  # updates 0 and 1 are applied
    state = json.loads((t.out / "checkpoints" / "step-000002" / "run_state.json").read_text())
    assert state["step"] == 2 and state["prompts_consumed"] == 8 and state["pending"] is None
    records = _records(t)
    assert [r["step"] for r in records] == [0, 1] and records[1]["generate_ahead_failed"] == 1.0
    resumed = make("rollout.overlap=true", resume="latest")
    trained = _record_training(resumed)
    resumed.step()
    assert resumed.step_idx == 3 and [r.prompt for r in trained[0]] == t._prompts(2)  # not step 1 again


def test_an_emergency_checkpoint_of_an_overlapped_run_carries_the_pending_batch(make):
    scored = 0

    def score(prompts, responses):
        nonlocal scored
        scored += 1
        if scored == 4:  # the evaluation, steps 0 and 1, then step 2's batch (sampled ahead)
            raise ActorDiedError()
        return [1.0] * len(prompts)

    t = make("rollout.overlap=true", "run.step_retries=0", reward=score)
    with pytest.raises(RunFailed, match=r"stopped at step 2 during score.*\n.*--resume .*step-000002"):
        t.fit()
    sampled_ahead = [[c.text for c in r.samples] for r in t.actors.generators[0].engine.last_batch[2]]
    resumed = make("rollout.overlap=true", resume="latest")
    trained, generated = _record_training(resumed), resumed.actors.generators[0].calls.get("generate", 0)
    assert resumed.step()["policy_lag"] == 1.0
    assert resumed.actors.generators[0].calls.get("generate", 0) == generated  # nothing regenerated
    assert [[c.text for c in r.samples] for r in trained[0]] == sampled_ahead
    assert [r.prompt for r in trained[0]] == t._prompts(2)


def test_resuming_with_rollout_overlap_changed_is_refused_naming_the_key(make):
    t = make("rollout.overlap=true", "run.save_every=1")
    t.step()
    folder = t.save()
    with pytest.raises(ResumeError, match=r"rollout.overlap.*True.*False"):
        make("rollout.overlap=false", resume="latest")
    state_file = folder / "run_state.json"
    state = json.loads(state_file.read_text())
    assert state["data_order"]["overlap"] is True
    del state["data_order"]["overlap"]  # a checkpoint written before the order recorded it:
    state_file.write_text(json.dumps(state))  # its pending batch says overlap was on
    with pytest.raises(ResumeError, match="rollout.overlap"):
        make("rollout.overlap=false", resume="latest")
    assert make("rollout.overlap=true", resume="latest").step_idx == 1
    plain = make("run.save_every=1", overwrite=True)
    plain.step()
    plain.save()
    with pytest.raises(ResumeError, match=r"rollout.overlap.*False.*True"):
        make("rollout.overlap=true", resume="latest")


@pytest.mark.parametrize("overlap", [False, True])
def test_every_generator_gets_a_share_of_the_prompts_in_order(make, overlap):
    """5 prompts on 4 generators: shares of 2, 1, 1, 1 (never an idle generator, which contiguous
    chunks of ceil(5 / 4) = 2 would leave), each told the global index of its first prompt, and the
    rollouts come back in prompt order. Both the plain and the generate-ahead (overlap) path."""
    t = make(*(["rollout.overlap=true"] if overlap else []))
    seen: list[tuple[int, list[str]]] = []
    engine = FakeEngine()
    engine.version = t.weights.version  # they serve the last sync's weights

    def generate(prompts, *, first_index, **kw):
        seen.append((first_index, list(prompts)))
        return engine.generate(prompts, first_index=first_index, **kw)

    t.actors.generators = [FakeActor(f"generator-{i}", generate=generate) for i in range(4)]
    prompts = [f"p{i}" for i in range(5)]
    if overlap:
        t._prompts = lambda k: prompts
        rollouts, lag = t._collect(t._generate_ahead(0), 0)
    else:
        rollouts = t.generate(prompts, n=1, step=0)
    assert seen == [(0, ["p0", "p1"]), (2, ["p2"]), (3, ["p3"]), (4, ["p4"])]
    assert [r.prompt for r in rollouts] == prompts



def test_a_batch_sampled_during_a_step_without_update_has_no_lag(make):
    """rollout.overlap: the batch sampled during step 0 is trained at step 1. Step 0 made no update
    (every reward invalid), so that batch is the current policy's: policy_lag 0, also after a resume."""
    calls = {"n": 0}

    def score(prompts, responses):
        calls["n"] += 1
        return [math.nan] * len(prompts) if calls["n"] == 1 else [1.0] * len(prompts)

    t = make("rollout.overlap=true", "reward.on_invalid=skip", "run.save_every=1", reward=score)
    first = t.step()
    assert "loss" not in first and t._pending[1] == 0.0
    t.save()
    resumed = make("rollout.overlap=true", "reward.on_invalid=skip", "run.save_every=1", resume="latest")
    assert resumed._pending[1] == 0.0
    assert t.step()["policy_lag"] == 0.0 and t.step()["policy_lag"] == 1.0
