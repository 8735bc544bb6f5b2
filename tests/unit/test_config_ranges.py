"""Range and cross-field rules of the training config: each bad value gets one clear error."""

import re

import pytest

from remax_ray.config import ConfigError, load_config


def _raises(message: str):
    return pytest.raises(ConfigError, match=re.escape(message))


# --------------------------------------------------------------------------- range rules


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["rollout.temperature=0"], "rollout.temperature: must be > 0"),
        (["rollout.top_p=0"], "rollout.top_p: must be in (0, 1]"),
        (["rollout.top_p=1.5"], "rollout.top_p: must be in (0, 1]"),
        (["rollout.samples_per_prompt=0"], "rollout.samples_per_prompt: must be >= 1 (got 0)"),
        (["rollout.max_new_tokens=0"], "rollout.max_new_tokens: must be >= 1"),
        (["rollout.max_prompt_tokens=0"], "rollout.max_prompt_tokens: must be >= 1"),
        (["rollout.num_generators=0"], "rollout.num_generators: must be >= 1"),
        (["rollout.kv_cache_gib=-1"], "rollout.kv_cache_gib: must be >= 0"),
        (["rollout.gpu_memory_utilization=0"], "rollout.gpu_memory_utilization: must be in (0, 1]"),
        (["rollout.gpu_memory_utilization=1.01"], "rollout.gpu_memory_utilization: must be in (0, 1]"),
        (["rollout.num_cpus_per_generator=-1"], "rollout.num_cpus_per_generator: must be >= 0"),
        (["learner.lr=0"], "learner.lr: must be > 0 (got 0.0)"),
        (["learner.weight_decay=-0.1"], "learner.weight_decay: must be >= 0"),
        (["learner.beta1=1"], "learner.beta1: must be in [0, 1)"),
        (["learner.beta2=-0.1"], "learner.beta2: must be in [0, 1)"),
        (["learner.warmup_steps=-1"], "learner.warmup_steps: must be >= 0"),
        (["learner.max_grad_norm=-1"], "learner.max_grad_norm: must be >= 0"),
        (["learner.micro_batch_size=0"], "learner.micro_batch_size: must be >= 1"),
        (["learner.num_cpus=-1"], "learner.num_cpus: must be >= 0"),
        (["run.steps=-1"], "run.steps: must be >= 0"),
        (["run.prompts_per_step=0"], "run.prompts_per_step: must be >= 1"),
        (["run.eval_prompts=0"], "run.eval_prompts: must be >= 1"),
        (["run.eval_every=-1"], "run.eval_every: must be >= 0"),
        (["run.save_every=-1"], "run.save_every: must be >= 0"),
        (["run.dataset= "], "run.dataset: must not be empty"),
        (["run.output_dir="], "run.output_dir: must not be empty"),
        (["model.path="], "model.path: must not be empty"),
        (["algo.kl_coef=-0.1"], "algo.kl_coef: must be >= 0"),
        (["algo.score_clip=-1"], "algo.score_clip: must be >= 0"),
        (["algo.clip_eps=0"], "algo.clip_eps: must be > 0"),
        (["algo.gamma=1.1"], "algo.gamma: must be in [0, 1]"),
        (["algo.lam=-0.1"], "algo.lam: must be in [0, 1]"),
        (["reward.max_length=0"], "reward.max_length: must be >= 1"),
        (["reward.batch_size=0"], "reward.batch_size: must be >= 1"),
        (["cluster.num_cpus=-1"], "cluster.num_cpus: must be >= 0"),
        (["cluster.threads_per_actor=-1"], "cluster.threads_per_actor: must be >= 0"),
        (["cluster.sync_bucket_mb=0"], "cluster.sync_bucket_mb: must be >= 1"),
        (["model.dtype=fp16"], "model.dtype: unknown dtype 'fp16'; choices: auto, float32, bfloat16"),
        (["model.dtype=bfloat61"], "model.dtype: unknown dtype 'bfloat61'; did you mean 'bfloat16'?"),
        (["cluster.sync_transport=mpi"],
         "cluster.sync_transport: unknown transport 'mpi'; choices: auto, cpu, shm, objects, nccl, gloo"),
        (["cluster.device=gpu"], "cluster.device: unknown device 'gpu'; did you mean 'cuda'? choices: auto, cpu, cuda"),
        (["cluster.device=tpu"], "cluster.device: unknown device 'tpu'"),
        (["model.dtype=bf16"], "model.dtype: unknown dtype 'bf16'; did you mean 'bfloat16'?"),
        (["reward.kind=vadr"], "reward.kind: unknown reward kind 'vadr'; did you mean 'vader'?"),
        (["reward.kind=function"], "reward.function: required when reward.kind=function"),
        (
            ["reward.kind=function", "reward.function=mymod.score"],
            "reward.function: must look like 'package.module:function' (got 'mymod.score')",
        ),
        (["reward.model_path= "], "reward.model_path: required when reward.kind=hf"),
        (["reward.template={prompt}"], "reward.template: must contain '{response}'"),
        (["reward.template={{response}}"], "reward.template: must contain '{response}'"),
        (["reward.template={response}{x}"], "reward.template: only {prompt} and {response} placeholders"),
        (["reward.template={response"], "reward.template: invalid format string"),
        (
            ["run.prompts_per_step=6", "rollout.samples_per_prompt=3", "learner.micro_batch_size=4"],
            "run.prompts_per_step * rollout.samples_per_prompt (6 * 3 = 18) must be divisible by "
            "learner.micro_batch_size (4)",
        ),
        (
            ["run.prompts_per_step=2", "rollout.num_generators=3", "learner.micro_batch_size=1"],
            "run.prompts_per_step (2) must be >= rollout.num_generators (3)",
        ),
        (["algo.estimator=remx"], "algo.estimator: unknown estimator 'remx'; did you mean 'remax'"),
        (["algo.kl_estimator=k4"], "algo.kl_estimator: unknown KL estimator 'k4'"),
        (["algo.kl_placement=lose"], "algo.kl_placement: unknown KL placement 'lose'; did you mean 'loss'?"),
        (["algo.loss_agg=mean"], "algo.loss_agg: unknown loss aggregation 'mean'"),
    ],
)
def test_range_rules(overrides, message):
    with _raises(message):
        load_config(overrides=overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ["reward.kind=function", "reward.function=my_pkg.rewards:score"],
        ["reward.kind=hf", "reward.model_path=/models/rm"],
        ["reward.template={response}"],
        ["learner.max_grad_norm=0", "algo.score_clip=0", "run.steps=0", "run.eval_every=0"],
        ["rollout.top_p=1", "rollout.gpu_memory_utilization=1", "algo.gamma=0", "algo.lam=1"],
        ["run.prompts_per_step=3", "rollout.num_generators=3", "learner.micro_batch_size=3"],
        ["model.dtype=bfloat16", "cluster.device=cuda", "cluster.sync_transport=nccl"],
        ["algo.kl_coef=0.05", "algo.kl_estimator=k3", "algo.kl_placement=loss", "algo.loss_agg=seq-sum"],
    ],
)
def test_valid_edge_values(overrides):
    load_config(overrides=overrides)


def test_estimator_min_samples():
    from remax_ray.algo import ESTIMATORS

    assert "remax" in ESTIMATORS
    needy = sorted(name for name, spec in ESTIMATORS.items() if spec.min_samples >= 2)
    if not needy:
        pytest.skip("no estimator needs several samples per prompt")
    name = needy[0]
    n = ESTIMATORS[name].min_samples
    with _raises(f"{name} needs rollout.samples_per_prompt >= {n} (got {n - 1})"):
        load_config(overrides=[f"algo.estimator={name}", f"rollout.samples_per_prompt={n - 1}"])
    load_config(overrides=[f"algo.estimator={name}", f"rollout.samples_per_prompt={n}", "run.prompts_per_step=8"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algo.epochs=0"], "algo.epochs: must be >= 1"),
        (["algo.value_clip=0"], "algo.value_clip: must be > 0"),
        (["learner.critic_lr=0"], "learner.critic_lr: must be > 0"),
        (["learner.mini_batch_size=-1"], "learner.mini_batch_size: must be >= 0"),
        # Several optimizer steps per batch only where a ratio corrects for the moved policy.
        (["algo.epochs=2"], "algo.estimator=remax is on-policy: it needs algo.epochs=1"),
        (["algo.estimator=reinforce", "learner.mini_batch_size=8"],
         "algo.estimator=reinforce is on-policy"),
        (["algo.estimator=ppo", "learner.mini_batch_size=12"],
         "learner.mini_batch_size (12) must divide the step's batch (16)"),
        (["algo.estimator=ppo", "learner.mini_batch_size=4", "learner.micro_batch_size=8"],
         "learner.mini_batch_size (4) must divide the step's batch (16) and be a multiple of "
         "learner.micro_batch_size (8)"),
    ],
)
def test_ppo_update_shape_rules(overrides, message):
    with _raises(message):
        load_config(overrides=overrides)


def test_several_optimizer_steps_per_batch_are_for_ppo_alone():
    """The same update shape (4 epochs of 8-sequence mini-batches of a 16-sequence batch) is
    accepted for PPO and refused for ReMax; ReMax accepts a mini-batch of the batch's size, and
    refuses half of it even in one epoch."""
    shape = ["algo.epochs=4", "learner.mini_batch_size=8", "learner.micro_batch_size=8"]
    cfg = load_config(overrides=["algo.estimator=ppo", *shape])
    batch = cfg.run.prompts_per_step * cfg.rollout.samples_per_prompt
    assert batch == 16 and cfg.algo.epochs * batch // cfg.learner.mini_batch_size == 8  # optimizer steps
    with _raises("algo.estimator=remax is on-policy: it needs algo.epochs=1"):
        load_config(overrides=["algo.estimator=remax", *shape])
    whole = load_config(overrides=["algo.estimator=remax", "learner.mini_batch_size=16"])
    assert whole.learner.mini_batch_size == batch
    with _raises("algo.estimator=remax is on-policy"):
        load_config(overrides=["algo.estimator=remax", "learner.mini_batch_size=8"])


@pytest.mark.parametrize("estimator", ["k2", "k3"])
def test_overlap_refuses_the_kl_penalty_in_the_loss(estimator):
    """Under rollout.overlap the samples come from the policy one update behind, so the KL-in-loss
    gradient (an expectation under the learner's policy) would be taken under the wrong one."""
    keys = ["rollout.overlap=true", "algo.kl_placement=loss", f"algo.kl_estimator={estimator}"]
    with _raises("rollout.overlap=true with algo.kl_placement=loss (algo.kl_coef=0.02)"):
        load_config(overrides=keys)
    load_config(overrides=[*keys, "algo.kl_coef=0"])  # no penalty, nothing off-policy to refuse
    load_config(overrides=["rollout.overlap=true", "algo.kl_placement=reward"])  # corrected by the weights


@pytest.mark.parametrize("overrides, device, cores, on, why", [
    ([], "cpu", 2, False, "share the node's 2 cores (2 actors, every core (cluster.threads_per_actor=0))"),
    (["cluster.threads_per_actor=1"], "cpu", 2, True, "2 actors x 1 threads"),
    (["cluster.threads_per_actor=2"], "cpu", 2, False, "share the node's 2 cores (2 actors, 2 threads each)"),
    (["cluster.threads_per_actor=2", "rollout.num_generators=2"], "cpu", 8, True, "3 actors x 2 threads"),
    ([], "cuda", 2, True, "GPUs of their own"),
    (["algo.estimator=ppo"], "cuda", 2, False, "ppo's ratio"),
    (["algo.kl_placement=loss", "algo.kl_estimator=k3"], "cuda", 2, False, "KL in the loss"),
    (["rollout.overlap=false"], "cuda", 2, False, "rollout.overlap=false"),
    (["rollout.overlap=true"], "cpu", 2, True, "rollout.overlap=true"),
])
def test_overlap_auto_is_on_only_where_the_phases_can_run_at_once(overrides, device, cores, on, why):
    from remax_ray.config import resolve_overlap

    got, reason = resolve_overlap(load_config(overrides=overrides), device, cores)
    assert got is on and why in reason, reason


def test_overlap_auto_accepts_what_explicit_overlap_refuses():
    # auto turns itself off for PPO and the KL in the loss instead of refusing the config.
    load_config(overrides=["algo.estimator=ppo"])
    load_config(overrides=["algo.kl_placement=loss", "algo.kl_estimator=k3"])
