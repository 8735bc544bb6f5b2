"""The documented metric names (remax_ray.monitor.metric_names) against what a real run logs, and the Ray
counters across a crash and a resume. No Ray: the driver runs with in-process actors whose
``.remote`` returns the value, the learner is the real one on the tiny model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from remax_ray.cluster.actors import Actors
from remax_ray.config import load_config
from remax_ray.data.rollouts import Completion, PromptRollout
from remax_ray.driver import trainer as trainer_module
from remax_ray.learner.learner import Learner
from remax_ray.monitor import metrics as metrics_module
from remax_ray.monitor.metric_names import (
    COUNTERS,
    EVAL_KEYS,
    FAILURE_ONLY,
    GAUGES,
    GPU_ONLY,
    OVERLAP_ONLY,
    PPO_ONLY,
    CounterTracker,
    gauge_name,
    gauge_values,
    prometheus_name,
    tensorboard_tag,
    with_throughput,
)
from remax_ray.monitor.metrics import MetricsSink
from remax_ray.rollout.generator import WeightVersion


class _InProcess:
    """An actor handle whose methods run here: ``handle.method.remote(...)`` returns the result."""

    def __init__(self, name: str, **methods):
        self.owns = lambda actor_id, me=name: actor_id == me
        for method, fn in {"__ray_ready__": lambda: True, **methods}.items():
            setattr(self, method, SimpleNamespace(remote=fn))


def _generate(prompts, *, n, step, first_index, run_seed, greedy=True):
    g = torch.Generator().manual_seed(1000 * step + first_index)

    def completion():
        ids = torch.randint(1, 300, (3,), generator=g).tolist()
        return Completion(ids, "text", "length", [-5.0] * len(ids))

    return [PromptRollout(p, torch.randint(1, 300, (4,), generator=g).tolist(),
                          [completion() for _ in range(n)], completion() if greedy else None)
            for p in prompts]


class _Engine:
    """Responses stamped with the last sync the engine loaded, as a Generator's are."""

    def __init__(self):
        self.weights = WeightVersion()

    def generate(self, prompts, **kwargs):
        rollouts = _generate(prompts, **kwargs)
        for r in rollouts:
            r.weight_version = self.weights.version
        return rollouts

    def load_weight_refs(self, refs, version, first_bucket, buckets_in_sync):
        self.weights.bucket_loaded(version, first_bucket, buckets_in_sync)
        return {"sync_bytes": 4096.0}


def _run_records(tmp_path, monkeypatch, tiny_model, prompt_file, *overrides: str) -> list[dict]:
    """Every record of a 1-step ``fit`` (an eval, the step, an eval) with the real learner."""
    monkeypatch.setattr(trainer_module, "connect", lambda cfg, include_dashboard=None: None)
    monkeypatch.setattr(trainer_module.ray, "get", lambda refs, timeout=None: refs)
    cfg = load_config(None, [f"model.path={tiny_model}", f"run.dataset={prompt_file}",
                             f"run.output_dir={tmp_path / 'run'}", "reward.kind=vader", "run.steps=1",
                             "run.prompts_per_step=2", "run.eval_prompts=2", "run.progress=false",
                             "learner.micro_batch_size=2", "algo.kl_coef=0.05",
                             "run.check_sync=false",  # the fake generator's log-probs are random
                             *overrides])
    real = Learner(str(tiny_model), cfg.learner, cfg.algo, seed=0)
    learner = _InProcess("learner", train_step=real.train_step, weight_buckets=lambda mb, dtype: 1,
                         node_id=lambda: "learner-node",
                         export_bucket=lambda k, mb, dtype: b"w",
                         save=lambda folder, state, cfg_yaml, keep: folder)
    engine = _Engine()
    gen = _InProcess("generator", generate=engine.generate, load_weight_refs=engine.load_weight_refs,
                  node_id=lambda: "generator-node")
    reward = _InProcess("reward", score=lambda prompts, responses: [len(r) / 10 for r in responses])
    t = trainer_module.Trainer(cfg, actors=Actors([gen], reward, learner, "cpu", "float32"))
    t.fit()
    t.metrics.close()
    return t.metrics.read()


def _names(records: list[dict]) -> set[str]:
    return {name for r in records for name in gauge_values(r)}


@pytest.mark.parametrize("estimator", ["remax", "ppo"])
def test_a_real_run_exports_exactly_the_documented_gauges(tmp_path, monkeypatch, tiny_model, prompt_file,
                                                          estimator):
    records = _run_records(tmp_path, monkeypatch, tiny_model, prompt_file, f"algo.estimator={estimator}")
    not_here = GPU_ONLY | FAILURE_ONLY | OVERLAP_ONLY | ({"reward_greedy"} if estimator == "ppo" else PPO_ONLY)
    assert _names(records) == {gauge_name(k) for k in GAUGES.keys() - not_here}
    step = next(r for r in records if "loss" in r)
    assert step["generated_tokens"] == (2 if estimator == "ppo" else 4) * 3  # 2 prompts, 3 tokens each
    assert step["sequences"] == 2.0
    assert step["generate_tokens_per_s"] == pytest.approx(step["generated_tokens"] / step["generate_s"])
    assert step["learn_tokens_per_s"] == pytest.approx(
        step["response_tokens"] * step["sequences"] / step["learn_s"])
    evals = [r for r in records if "eval_greedy_reward" in r]
    assert len(evals) == 2 and {k for r in evals for k in r} - {"step", "elapsed_s"} == EVAL_KEYS


def test_names_follow_rays_prometheus_naming():
    assert gauge_name("reward_sample") == "remax_reward_sample"
    assert prometheus_name(gauge_name("reward_sample")) == "ray_remax_reward_sample"
    assert gauge_name("a.b-c") == "remax_a_b_c"  # Prometheus names allow [a-zA-Z0-9_:] only
    # Ray 2.60 exports a Counter named x as the Prometheus counter x_total; already suffixed, as-is.
    assert all(name.startswith("remax_") and name.endswith("_total") for name in COUNTERS)
    assert tensorboard_tag("kl") == "training/kl" and tensorboard_tag("new_key") == "other/new_key"
    assert gauge_values({"step": 3, "loss": 1, "grad_norm": math.inf, "ok": True, "note": "x"}) == {
        "remax_loss": 1.0}  # no step, no non-finite numbers, no bools, no strings


def test_throughput_needs_its_inputs():
    assert with_throughput({"generated_tokens": 100.0, "generate_s": 4.0,
                            "response_tokens": 5.0, "sequences": 8.0, "learn_s": 2.0}) == {
        "generated_tokens": 100.0, "generate_s": 4.0, "response_tokens": 5.0, "sequences": 8.0,
        "learn_s": 2.0, "generate_tokens_per_s": 25.0, "learn_tokens_per_s": 20.0}
    assert with_throughput({"eval_greedy_reward": 0.5}) == {"eval_greedy_reward": 0.5}
    assert "learn_tokens_per_s" not in with_throughput({"response_tokens": 5.0, "sequences": 8.0, "learn_s": 0})


def _step(i: int, skipped: float) -> dict:
    return {"generated_tokens": 10.0, "response_tokens": 2.0, "sequences": 4.0, "skipped_samples": skipped,
            "actor_retries": 0.0, "steps_without_update": 0.0, "prompts_consumed": 2.0 * (i + 1)}


class _FakeRay:
    """ray.util.metrics stand-ins that record every Counter.inc and Gauge.set."""

    def __init__(self, monkeypatch):
        import ray
        import ray.util.metrics as ray_metrics

        self.incs: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        fake = self

        class Counter:
            def __init__(self, name, description="", tag_keys=()):
                self.name = name

            def inc(self, value, tags=None):
                assert value > 0 and tags == {"run": "r"}
                fake.incs[self.name] = fake.incs.get(self.name, 0.0) + value

        class Gauge(Counter):
            def set(self, value, tags=None):
                fake.gauges[self.name] = value

        monkeypatch.setattr(ray, "is_initialized", lambda: True)
        monkeypatch.setattr(ray_metrics, "Counter", Counter)
        monkeypatch.setattr(ray_metrics, "Gauge", Gauge)


def test_counters_count_each_step_once_across_a_crash_and_a_resume(tmp_path, monkeypatch):
    ray = _FakeRay(monkeypatch)
    skipped = [0.0, 2.0, 2.0, 5.0, 5.0, 6.0]  # cumulative, as the trainer logs it
    first = MetricsSink(tmp_path, run_name="r", tensorboard=False)
    first.log(0, {"eval_greedy_reward": 0.5})  # no counter moves for an evaluation
    for i in range(4):
        first.log(i, _step(i, skipped[i]))
    assert ray.incs["remax_steps_total"] == 4 and ray.incs["remax_skipped_samples_total"] == 5
    assert ray.gauges["remax_skipped_samples"] == 5 and ray.gauges["remax_prompts_consumed"] == 8
    # The driver dies after step 3; the checkpoint was after step 1 (3 records: eval, steps 0 and 1).
    assert MetricsSink(tmp_path, use_ray=False, tensorboard=False).truncate(3) == 2
    second = MetricsSink(tmp_path, run_name="r", tensorboard=False)
    for i in range(2, 6):  # steps 2 and 3 run again, then 4 and 5
        second.log(i, _step(i, skipped[i]))
    records = second.read()
    assert [r["step"] for r in records] == [0, 0, 1, 2, 3, 4, 5]
    # What Prometheus' increase() sums over both processes equals the run's own totals.
    assert ray.incs["remax_steps_total"] == 6
    assert ray.incs["remax_skipped_samples_total"] == records[-1]["skipped_samples"] == 6
    assert ray.incs["remax_prompts_total"] == records[-1]["prompts_consumed"] == 12
    assert ray.incs["remax_generated_tokens_total"] == 60 and ray.incs["remax_learned_tokens_total"] == 48
    assert "remax_actor_retries_total" not in ray.incs  # never grew: Ray's Counter refuses inc(0)


def test_an_overwritten_run_counts_from_scratch(tmp_path, monkeypatch, tiny_model, prompt_file):
    from remax_ray.driver.resume import initial_state

    ray = _FakeRay(monkeypatch)
    sink = MetricsSink(tmp_path, run_name="r", tensorboard=False)
    for i in range(3):
        sink.log(i, _step(i, 0.0))
    sink.truncate(1)  # a resume: steps up to 2 were counted, metrics_counted.json says so
    assert (tmp_path / metrics_module.COUNTED_FILE).exists()
    cfg = load_config(None, [f"model.path={tiny_model}", f"run.dataset={prompt_file}", f"run.output_dir={tmp_path}"])
    initial_state(cfg, str(tiny_model), SimpleNamespace(train=["p"] * 8), None, overwrite=True, overlap=False)
    assert not (tmp_path / metrics_module.COUNTED_FILE).exists()
    fresh = MetricsSink(tmp_path, run_name="r", tensorboard=False)
    fresh.log(0, _step(0, 0.0))
    assert ray.incs["remax_steps_total"] == 4  # 3 before, and the new run's step 0


def test_tracker_starts_from_the_kept_records():
    kept = [{"step": 0, "eval_greedy_reward": 0.1}, {"step": 0, **_step(0, 3.0)}]
    tracker = CounterTracker.resuming(kept, counted_through=2)
    assert tracker.counted_through == 2 and tracker.last["skipped_samples"] == 3.0
    assert tracker.increments(1, _step(1, 4.0)) == {}  # counted before the crash
    assert tracker.increments(3, _step(3, 4.0))["remax_steps_total"] == 1.0
    assert "remax_skipped_samples_total" not in tracker.increments(4, _step(4, 4.0))
