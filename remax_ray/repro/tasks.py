"""The tasks a reproduction can run: names and the configuration overrides that make each one.

The registry is ``remax_ray.config.tasks``. Both movie-review tasks run by default: on
``sentiment`` the reward ignores the prompt (nothing for the greedy baseline to cancel), on
``steered-sentiment`` it depends on it (the paper's setting); the contrast is part of the test.
"""

from __future__ import annotations

from remax_ray.config import ConfigError
from remax_ray.config.tasks import TASKS, task_overrides

__all__ = ["DEFAULT_TASKS", "TASKS", "parse_tasks", "task_overrides"]

DEFAULT_TASKS = ("steered-sentiment", "sentiment")


def parse_tasks(text: str | list[str]) -> list[str]:
    tasks = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not tasks:
        raise ConfigError("--tasks: give at least one task, e.g. sentiment")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"--tasks: unknown task(s) {', '.join(map(repr, unknown))}; valid: {', '.join(TASKS)}")
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"--tasks: a task is listed twice in {','.join(tasks)}")
    return tasks
