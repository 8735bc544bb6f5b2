"""Where the actors go: one placement group per run, in one of two modes, and actor names.

- ``disaggregated``: every generator and the learner get a bundle of their own (a whole GPU each on
  a GPU cluster), so generation and learning never compete for a device and can run on different
  nodes (``cluster.placement_strategy=SPREAD``).
- ``colocated``: the learner shares generator 0's bundle, and so its node and GPU, through fractional
  GPUs (``cluster.colocated_gpu_share`` for the learner, the rest for the engine). Further
  generators keep bundles of their own. Phases take turns, so one device serves both; set
  ``rollout.gpu_memory_utilization`` so that the engine leaves the learner room.

The reward actor rides in the learner's bundle without resources of its own: it scores between
generation and learning, on the learner's node, where a reward model on GPU would also go.

``plan`` is pure (tests check it without Ray); ``create`` and ``options`` are the Ray side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remax_ray.config import Config, ConfigError
from remax_ray.config.runtime import PLACEMENT_MODES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slot:
    bundle: int
    num_cpus: float
    num_gpus: float


@dataclass(frozen=True)
class Plan:
    mode: str
    bundles: list[dict[str, float]]
    slots: dict[str, Slot]
    """role ("generator-<i>", "learner", "reward") -> its bundle and resources."""


def learner_role(rank: int) -> str:
    """The placement role (and actor name suffix) of learner rank ``rank``: rank 0 keeps ``learner``."""
    return "learner" if rank == 0 else f"learner-{rank}"


def plan(mode: str, num_generators: int, generator_cpus: float, learner_cpus: float, gpu: bool,
         learner_gpu_share: float = 0.5, learner_ranks: int = 1) -> Plan:
    """Bundles and slots. Each learner rank has a bundle of its own (so ranks can land on different
    nodes), except that ``colocated`` puts rank r in generator r's bundle while there is one."""
    if mode not in PLACEMENT_MODES:
        raise ConfigError(f"cluster.placement must be one of {', '.join(PLACEMENT_MODES)}, got {mode!r}")
    g = 1.0 if gpu else 0.0
    slots = {f"generator-{i}": Slot(i, generator_cpus, g) for i in range(num_generators)}
    bundles = [{"CPU": generator_cpus, "GPU": g} for _ in range(num_generators)]
    for rank in range(learner_ranks):
        if mode == "colocated" and rank < num_generators:
            share = learner_gpu_share * g
            slots[f"generator-{rank}"] = Slot(rank, generator_cpus, g - share)
            slots[learner_role(rank)] = Slot(rank, learner_cpus, share)
            bundles[rank] = {"CPU": generator_cpus + learner_cpus, "GPU": g}
        else:
            slots[learner_role(rank)] = Slot(len(bundles), learner_cpus, g)
            bundles.append({"CPU": learner_cpus, "GPU": g})
    slots["reward"] = Slot(slots["learner"].bundle, 0.0, 0.0)
    bundles = [{k: v for k, v in b.items() if v > 0} for b in bundles]
    for i, bundle in enumerate(bundles):
        if not bundle:  # Ray rejects empty bundles; say which setting made it empty
            raise ConfigError(f"placement bundle {i} would hold no resources: give the actors CPUs "
                              "(rollout.num_cpus_per_generator, learner.num_cpus) or a GPU")
    return Plan(mode, bundles, slots)


def plan_for(cfg: Config, device: str) -> Plan:
    return plan(cfg.cluster.placement, cfg.rollout.num_generators, cfg.rollout.num_cpus_per_generator,
                cfg.learner.num_cpus, device == "cuda", cfg.cluster.colocated_gpu_share,
                cfg.learner.num_workers)


def run_namespace(cfg: Config) -> str:
    """One Ray namespace per run, named after its output folder: the dashboard's Actors view then
    reads ``remax-generator-0``, ``remax-learner``, ``remax-reward`` under ``remax-<run>``, and a
    second driver on the same run folder fails on the taken names instead of racing the first."""
    return f"remax-{Path(cfg.run.output_dir).resolve().name}"


@dataclass
class Placement:
    plan: Plan
    group: Any
    namespace: str

    def options(self, role: str) -> dict[str, Any]:
        """Ray actor options: the role's bundle, resources and name."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        slot = self.plan.slots[role]
        return {"num_cpus": slot.num_cpus, "num_gpus": slot.num_gpus, "name": f"remax-{role}",
                "namespace": self.namespace,
                "scheduling_strategy": PlacementGroupSchedulingStrategy(
                    self.group, placement_group_bundle_index=slot.bundle)}

    def remove(self) -> None:
        from ray.util import remove_placement_group

        remove_placement_group(self.group)


def create(cfg: Config, device: str, growth: Any = None) -> Placement:
    """Reserve the run's bundles, or fail with the reason (no node can hold a bundle) in bounded time.

    On a cluster whose autoscaler can add nodes (``growth``: :class:`remax_ray.cluster.autoscaling.
    Growth`), the group's pending demand is what makes the autoscaler start them, so it waits up to
    ``cluster.autoscale_timeout_s`` (nodes boot and pull the image) rather than
    ``cluster.placement_timeout_s``, saying on the terminal what it waits for and for how long."""
    import time

    import ray
    from ray.util import placement_group, remove_placement_group

    from remax_ray.cluster import autoscaling

    the_plan = plan_for(cfg, device)
    namespace = run_namespace(cfg)
    grows = growth is not None and growth.can_grow
    key = "cluster.autoscale_timeout_s" if grows else "cluster.placement_timeout_s"
    timeout = cfg.cluster.autoscale_timeout_s if grows else cfg.cluster.placement_timeout_s
    group = placement_group(the_plan.bundles, strategy=cfg.cluster.placement_strategy)
    ready = group.ready()
    start = time.monotonic()
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            break
        done, _ = ray.wait([ready], timeout=min(left, _PROGRESS_EVERY_S))
        if done:
            ray.get(ready)
            if time.monotonic() - start >= _PROGRESS_EVERY_S:  # it said it was waiting: say it is over
                log.info("placement: %d bundles placed after %.0f s", len(the_plan.bundles),
                         time.monotonic() - start)
            return Placement(the_plan, group, namespace)
        now = autoscaling.read() if grows else autoscaling.NO_GROWTH
        doing = f"; the {now.source} is {now.pending_text()}" if now.source else ""
        log.info("placement: waiting for %d bundles %s (%s, %s)%s: %.0f s of %g s (%s)",
                 len(the_plan.bundles), _summary(the_plan.bundles), the_plan.mode,
                 cfg.cluster.placement_strategy, doing, time.monotonic() - start, timeout, key)
    remove_placement_group(group)
    raise ConfigError(
        f"cluster.placement={the_plan.mode} ({cfg.cluster.placement_strategy}) needs bundles "
        f"{the_plan.bundles}, which the cluster could not place within {timeout:g} s ({key}): "
        + ("the autoscaler did not start nodes that hold them (see `ray status`: node types, their max "
           "counts, failed launches)" if grows else "no node, or not enough nodes, has those resources free"))


_PROGRESS_EVERY_S = 15.0


def _summary(bundles: list[dict[str, float]]) -> str:
    """``[{CPU: 2, GPU: 1}] * 3`` reads as ``3 x {CPU: 2, GPU: 1}``."""
    counts: dict[str, int] = {}
    for b in bundles:
        text = "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(b.items())) + "}"
        counts[text] = counts.get(text, 0) + 1
    return " + ".join(f"{n} x {text}" for text, n in counts.items())
