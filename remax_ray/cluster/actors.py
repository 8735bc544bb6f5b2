"""Joining a Ray cluster, and starting the run's actors (resources, env, placement, names).

The shells themselves (what each actor adds to its plain class) are in :mod:`remax_ray.cluster.shells`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError

from remax_ray.cluster import autoscaling, placement
from remax_ray.cluster.learner_group import LearnerGroup
from remax_ray.cluster.placement import Placement, Plan, learner_role, plan_for, run_namespace
from remax_ray.cluster.shells import GeneratorShell, LearnerShell, RewardShell
from remax_ray.config import Config, ConfigError, check_for_device, resolve_overlap
from remax_ray.learner.lora import LoraSpec
from remax_ray.reward.scorer import reward_kwargs
from remax_ray.rollout.kv_cache import largest_call

log = logging.getLogger(__name__)


@dataclass
class Actors:
    generators: list[Any]
    reward: Any
    learner: Any
    device: str
    """The learner's device ("cpu" or "cuda")."""
    dtype: str
    """The generators' weight dtype; the CPU transport sends weights already cast to it."""
    placement: Placement | None = None
    """The run's placement group (None for actors placed by the caller)."""

    def kill(self) -> None:
        """Kill every actor (vLLM engines hold memory until their actor dies) and free the bundles."""
        for actor in [*self.generators, self.reward]:
            ray.kill(actor, no_restart=True)
        self.learner.kill()
        if self.placement is not None:
            self.placement.remove()


def connect(cfg: Config, include_dashboard: bool | None = None) -> None:
    """Join the cluster named by ``cluster.address`` / RAY_ADDRESS (``ray job submit``), else start one.

    An address where no cluster answers fails within seconds (ray.init would retry for minutes), and
    a ``cluster.address`` that disagrees with an already-initialised Ray is an error, not ignored.
    Without an address, the cluster a ``ray start`` recorded on this machine is joined as ray.init()
    joins it, if it still answers; a dead one is a warning, and a local Ray starts instead.
    """
    from remax_ray.cluster.address import auto_join_address, check_agrees, check_reachable

    if ray.is_initialized():
        check_agrees(cfg.cluster.address)
        return
    source = "cluster.address" if cfg.cluster.address else "RAY_ADDRESS"
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address, source)
        ray.init(address=address)
    elif auto_join_address() is not None:  # a live `ray start` cluster: cluster.num_cpus is not ours
        ray.init(include_dashboard=include_dashboard)
    else:  # "local": without it, ray.init would read the stale record again and retry it for minutes
        ray.init(address="local", num_cpus=cfg.cluster.num_cpus or None, include_dashboard=include_dashboard)


def reward_model_path(cfg: Config) -> str:
    """The ``reward.model_path`` the reward actor is handed: a ``builtin:`` one resolved to its folder
    on the driver, for a kind that reads it (:func:`remax_ray.reward.scorer.reward_kwargs`)."""
    return reward_kwargs(cfg.reward)["model_path"]


def overlap_for(cfg: Config, device: str) -> tuple[bool, str]:
    """``rollout.overlap`` resolved for this driver's node (``config.resolve_overlap`` with its cores):
    the trainer and the learner's importance weights ask the same pure function with the same inputs."""
    return resolve_overlap(cfg, device, os.cpu_count() or 1)


def resolve_device(cfg: Config) -> str:
    if cfg.cluster.device != "auto":
        return cfg.cluster.device
    return "cuda" if ray.cluster_resources().get("GPU", 0) >= 1 else "cpu"


def _check_fits(cfg: Config, the_plan: Plan, growth: autoscaling.Growth = autoscaling.NO_GROWTH) -> None:
    """Fail fast instead of waiting forever for resources the cluster can never offer. A cluster
    whose autoscaler can add nodes is refused only bundles that no node type could hold (where the
    autoscaler publishes its node types); otherwise the placement group asks it for nodes."""
    total = ray.cluster_resources()
    cpus = sum(b.get("CPU", 0) for b in the_plan.bundles)
    gpus = sum(b.get("GPU", 0) for b in the_plan.bundles)
    if cpus <= total.get("CPU", 0) and gpus <= total.get("GPU", 0):
        return
    if growth.can_grow:
        never = []
        if growth.node_types:  # published: a bundle must fit a node type or a node up now
            shapes = [*growth.node_types.values(), *(n["Resources"] for n in ray.nodes() if n["Alive"])]
            never = autoscaling.bundles_no_node_can_hold(the_plan.bundles, shapes)
        if never:
            raise ConfigError(
                f"placement bundles {[the_plan.bundles[i] for i in never]} ({the_plan.mode} placement) fit "
                f"no node type of the autoscaler ({growth.node_types}); lower rollout.num_cpus_per_generator "
                "or learner.num_cpus, or add a node type that holds them")
        most = autoscaling.most_resources(growth)
        if most is not None and (cpus > most.get("CPU", 0) or gpus > most.get("GPU", 0)):
            raise ConfigError(
                f"the actors need {cpus:g} CPUs and {gpus:g} GPUs ({the_plan.mode} placement) but the "
                f"cluster has at most {most.get('CPU', 0):g} CPUs and {most.get('GPU', 0):g} GPUs with "
                "every node type at its max count; lower rollout.num_generators, or raise the max count")
        return  # the placement group's demand makes the autoscaler add nodes
    raise ConfigError(
        f"the actors need {cpus:g} CPUs and {gpus:g} GPUs ({the_plan.mode} placement) but the Ray "
        f"cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs and no autoscaler "
        "that could add nodes; lower rollout.num_generators, rollout.num_cpus_per_generator or "
        "learner.num_cpus")


NAME_RELEASE_S = 15.0
"""How long a name held by an actor being killed may take to come free (ray.kill returns first)."""
NAME_POLL_S = 0.5
RANK_COLLECTIVE_FLOOR_S = 300.0
"""The least a learner rank waits in a collective before failing: a model's first gathers and
checkpoint writes take minutes on a slow node, a dead peer is what the bound is for."""


def _named(actor_cls: Any, options: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """Create a named actor. A name still held by an actor that is being killed (ray.kill returns
    before the name is released) is retried briefly; one held by a live actor means another driver
    runs this very run."""
    deadline = time.monotonic() + NAME_RELEASE_S
    while True:
        try:
            return actor_cls.options(**options).remote(*args, **kwargs)
        except ValueError as err:
            if "already taken" not in str(err) and "already exists" not in str(err):
                raise
            if time.monotonic() > deadline:
                raise ConfigError(f"an actor named {options['name']!r} already lives in namespace "
                                  f"{options['namespace']!r}: another driver is running this run "
                                  "(same run.output_dir); stop it or choose another run.output_dir") from None
            time.sleep(NAME_POLL_S)


def _threads(cfg: Config) -> int:
    return cfg.cluster.threads_per_actor or os.cpu_count() or 1


def _env(cfg: Config, **extra: str) -> dict[str, Any]:
    # Ray would set OMP_NUM_THREADS from num_cpus (1); our actors take turns, so each phase may use
    # all cores instead.
    threads = str(_threads(cfg))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           # vLLM's per-request INFO lines would bury the progress bar; an explicit setting wins.
           "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
           # Quiet at the source too, for actors on a cluster the driver's log filter does not reach.
           "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning"),
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", **extra}
    return {"env_vars": env}


def start_actors(cfg: Config, model_path: str, *, reference_path: str | None = None,
                 resume_from: str | os.PathLike | None = None) -> Actors:
    """Create generators, the reward scorer and the learner; wait until all are ready.

    Generators and the reward actor are restartable (``cluster.max_actor_restarts``): they hold no
    state a step needs beyond their constructor's, and the trainer re-syncs the weights after a
    restart. Generators always start from ``model_path`` (the original model, which stays on disk;
    a checkpoint folder may be pruned while they run); on resume the learner starts from the
    checkpoint and the trainer syncs its weights into them."""
    device = resolve_device(cfg)
    check_for_device(cfg, device)
    growth = autoscaling.read()
    _check_fits(cfg, plan_for(cfg, device), growth)
    where = placement.create(cfg, device, growth)
    starts: dict[str, Callable[[], Any]] = {
        **{f"generator-{i}": functools.partial(start_generator, cfg, model_path, device, where, i)
           for i in range(cfg.rollout.num_generators)},
        "reward": functools.partial(start_reward, cfg, where),
        "learner": functools.partial(start_learner, cfg, model_path, device, wait=False,
                                     reference_path=reference_path, resume_from=resume_from, where=where)}
    ready = started(starts, retries=cfg.run.max_learner_restarts)
    generators = [ready[f"generator-{i}"] for i in range(cfg.rollout.num_generators)]
    return Actors(generators, ready["reward"], ready["learner"], device, generator_dtype(cfg, device), where)


def started(starts: dict[str, Callable[[], Any]], retries: int) -> dict[str, Any]:
    """Each role's actor, started by ``starts[role]()`` and waited for. Ray restarts an actor that
    dies after its constructor returned, never one whose constructor failed (a vLLM engine core
    killed while it starts, a node lost during the load): such a role is started again, up to
    ``retries`` times in all, with the cause logged. A constructor that fails every time (a bad model
    path) then surfaces its own error."""
    actors = {role: start() for role, start in starts.items()}
    for attempt in range(retries + 1):
        failed: dict[str, Exception] = {}
        for role, actor in actors.items():
            try:
                ray.get(actor.__ray_ready__.remote())
            except RayActorError as err:
                failed[role] = err
        if not failed:
            return actors
        if attempt == retries:
            raise next(iter(failed.values()))
        for role, err in failed.items():
            log.warning("%s died while starting (%s: %s); starting it again (%d of %d)", role,
                        type(err).__name__, str(err).splitlines()[0] if str(err) else "", attempt + 1, retries)
            _kill(actors[role])
            actors[role] = starts[role]()
    raise AssertionError("unreachable")


def _kill(actor: Any) -> None:
    """A group kills its ranks itself; a plain actor handle is killed through Ray."""
    if hasattr(actor, "kill"):
        actor.kill()
    else:
        ray.kill(actor, no_restart=True)


def generator_dtype(cfg: Config, device: str) -> str:
    return cfg.model.dtype if cfg.model.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")


def start_generators(cfg: Config, model_path: str, device: str, where: Placement | None = None) -> list[Any]:
    """``rollout.num_generators`` vLLM generator actors serving ``model_path`` (not waited for).
    Without ``where`` (``remax-ray eval``) they are unnamed and outside any placement group, so an
    evaluation can run beside the run's own training."""
    return [start_generator(cfg, model_path, device, where, i) for i in range(cfg.rollout.num_generators)]


def start_generator(cfg: Config, model_path: str, device: str, where: Placement | None, i: int) -> Any:
    """Generator ``i`` of :func:`start_generators` (not waited for)."""
    ro = cfg.rollout
    # vLLM-CPU reserves a core for its scheduler by default, which halves generation on a 2-core
    # machine; our phases take turns, so the engine gets every core.
    gen_env = _env(cfg, VLLM_CPU_NUM_OF_RESERVED_CPU="0")
    sequences = largest_call(cfg.run.prompts_per_step, ro.samples_per_prompt, cfg.run.eval_prompts,
                             cfg.run.eval_samples, ro.num_generators)
    unplaced = {"num_cpus": ro.num_cpus_per_generator, "num_gpus": 1 if device == "cuda" else 0}
    return _named(ray.remote(GeneratorShell), {**(where.options(f"generator-{i}") if where else unplaced),
                                               "runtime_env": gen_env, "max_restarts": cfg.cluster.max_actor_restarts},
                  model_path, max_prompt_tokens=ro.max_prompt_tokens, max_new_tokens=ro.max_new_tokens,
                  temperature=ro.temperature, dtype=generator_dtype(cfg, device), seed=cfg.run.seed,
                  kv_cache_gib=ro.kv_cache_gib, kv_sequences=sequences, gpu_memory_utilization=ro.gpu_memory_utilization,
                  enforce_eager=ro.enforce_eager, trust_remote_code=cfg.model.trust_remote_code,
                  lora_rank=cfg.model.lora_rank)


def start_reward(cfg: Config, where: Placement | None = None) -> Any:
    """The reward actor (not waited for); without ``where``, unnamed and unplaced, as above."""
    return _named(
        ray.remote(RewardShell), {**(where.options("reward") if where else {"num_cpus": 0}),
                                  "runtime_env": _env(cfg), "max_restarts": cfg.cluster.max_actor_restarts},
        **reward_kwargs(cfg.reward))


def start_learner(cfg: Config, model_path: str, device: str | None = None, wait: bool = True, *,
                  reference_path: str | None = None, resume_from: str | os.PathLike | None = None,
                  where: Placement | None = None) -> LearnerGroup:
    """``learner.num_workers`` learner actors, each a process of its own (so its peak memory is its
    own run's), in its rank's bundle of ``where`` when given, named ``remax-learner`` (rank 0) and
    ``remax-learner-<r>`` in ``cfg``'s run namespace. Never restarted: a fresh learner would
    silently lose the run's optimizer state; resume instead. With several ranks they join one
    process group before loading the models (which ``wait`` then waits for)."""
    device = device or resolve_device(cfg)
    policy = str(resume_from) if resume_from else model_path
    world = cfg.learner.num_workers
    ranks = []
    for rank in range(world):
        role = learner_role(rank)
        options = {"num_cpus": cfg.learner.num_cpus, "num_gpus": 1 if device == "cuda" else 0,
                   "name": f"remax-{role}"}
        if where is not None:
            options = where.options(role)
        options |= {"namespace": run_namespace(cfg), "runtime_env": _env(cfg), "max_restarts": 0}
        ranks.append(_named(
            ray.remote(LearnerShell), options,
            policy, cfg.learner, cfg.algo, temperature=cfg.rollout.temperature, device=device,
            seed=cfg.run.seed, num_threads=_threads(cfg), reference_path=reference_path or model_path,
            trust_remote_code=cfg.model.trust_remote_code, lora=LoraSpec.of(cfg.model),
            resume_from=str(resume_from) if resume_from else None,
            importance_cap=cfg.algo.importance_cap if overlap_for(cfg, device)[0] else 0.0,
            rank=rank, world_size=world))
    joining = None
    if world > 1:
        # A rank that dies leaves the others waiting in a collective; this bounds the wait.
        timeout = max(cfg.cluster.sync_timeout_s, RANK_COLLECTIVE_FLOOR_S)
        host, port = ray.get(ranks[0].open_store.remote())
        joining = [r.join.remote(host, port, timeout) for r in ranks]
    group = LearnerGroup(ranks, cfg.learner.strategy, joining)
    if wait:
        ray.get(group.__ray_ready__.remote())
    return group
