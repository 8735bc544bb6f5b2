"""Named built-in tasks: a prompt dataset with the reward that goes with it, as config overrides.

``remax-ray train --task NAME`` puts a task's overrides after the config file and before the
command line's own, so ``--task steered-sentiment run.steps=8`` is that task, 8 steps; the repro
harness reads the same table (:func:`task_overrides`). Every task sets the same keys
(:data:`TASK_KEYS`), so naming one over a config file written for another leaves nothing of the
other's dataset or reward behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from remax_ray.config.base import ConfigError, _close, _did_you_mean

__all__ = ["TASKS", "TASK_KEYS", "Task", "task_overrides"]

TASK_KEYS = ("run.dataset", "run.prompt_key", "run.messages_key", "reward.kind", "reward.model_path",
             "reward.function", "reward.score_response_only")


@dataclass(frozen=True)
class Task:
    description: str
    overrides: tuple[str, ...]


TASKS: dict[str, Task] = {
    "sentiment": Task(
        "the default: continue a movie-review opening positively, scored by builtin:sentiment-rm on "
        "the continuation alone. A fast demo; the reward has no per-prompt offset for ReMax's greedy "
        "baseline to cancel.",
        ("run.dataset=builtin:movie-reviews", "run.prompt_key=prompt", "run.messages_key=",
         "reward.kind=hf", "reward.model_path=builtin:sentiment-rm", "reward.function=",
         "reward.score_response_only=auto"),
    ),
    "steered-sentiment": Task(
        "continue a movie-review opening in the tone its instruction asks for (positive or negative), "
        "scored by builtin:steered-rm on prompt and continuation. The reward depends on the prompt: "
        "the fair test of ReMax's baseline.",
        ("run.dataset=builtin:steered-reviews", "run.prompt_key=prompt", "run.messages_key=",
         "reward.kind=hf", "reward.model_path=builtin:steered-rm", "reward.function=",
         "reward.score_response_only=auto"),
    ),
    "arithmetic": Task(
        "answer addition and subtraction problems (builtin:arithmetic, in the policy's chat "
        "template); reward 1 for the right number (remax_ray.reward.functions:exact_match).",
        ("run.dataset=builtin:arithmetic", "run.prompt_key=prompt", "run.messages_key=messages",
         "reward.kind=function", "reward.model_path=",
         "reward.function=remax_ray.reward.functions:exact_match", "reward.score_response_only=auto"),
    ),
}


def task_overrides(name: str) -> list[str]:
    """The ``section.key=value`` overrides of task ``name``; :class:`ConfigError` with a
    did-you-mean for an unknown name."""
    task = TASKS.get(name)
    if task is None:
        raise ConfigError(f"unknown task {name!r}{_did_you_mean(_close(name, list(TASKS)))}"
                          f"known tasks: {', '.join(TASKS)}")
    return list(task.overrides)
