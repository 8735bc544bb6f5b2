"""The tasks a reproduction can run: names and the configuration overrides that make each one.

The registry is ``remax_ray.config.tasks`` (``TASKS`` and ``task_overrides(name)``). Where this
checkout does not have it yet, the one task every checkout has stands in: ``sentiment``, the
embedded default configuration (no overrides).
"""

from __future__ import annotations

from remax_ray.config import ConfigError

try:
    from remax_ray.config.tasks import TASKS, task_overrides
except ImportError:  # the registry has not landed in this checkout
    TASKS = {"sentiment": "movie-review continuations, rewarded by builtin:sentiment-rm (the default)"}

    def task_overrides(name: str) -> list[str]:
        if name not in TASKS:
            raise ConfigError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
        return []

DEFAULT_TASKS = ("sentiment",)


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
