"""What the terminal shows. By default: the progress bar, remax-ray's own messages (the data summary,
``resume: ...``, warnings about rewards or gradients, the final summary), Ray's line with the
dashboard address, and every warning or error that is not on the list below. ``--verbose`` shows
everything, as Ray, vLLM and transformers print it.

Ray forwards each actor's stdout and stderr to the driver; ``RAY_DEDUP_LOGS_SKIP_REGEX`` (read when
``ray`` is imported) drops matching lines there. The actors' own log files keep every line
(``/tmp/ray/session_latest/logs/worker-*``)."""

from __future__ import annotations

import logging
import os
import re
import sys

# Actor output a user cannot act on, matched anywhere in a forwarded line; and why it is dropped.
ACTOR_NOISE: tuple[tuple[str, str], ...] = (
    (r"^[\s\r]*$", "blank lines left by progress bars"),
    (r"\b(DEBUG|INFO|WARNING) \d\d-\d\d \d\d:\d\d:\d\d \[",
     "vLLM's start-up notes below ERROR (eager mode, no Triton, no tcmalloc, thread counts)"),
    (r"Loading weights|Loading safetensors checkpoint shards|Writing model shards",
     "progress bars of transformers and vLLM loading and saving a model"),
    (r"^\[?W\d{4} \d\d:\d\d:\d\d", "torch's C++ start-up warnings (Triton missing, NUMA binding)"),
    (r"(Future|Deprecation)Warning: ", "a library's deprecation notice to its own developers"),
    (r"resource_tracker: process died unexpectedly",
     "a generator that remax-ray eval killed after its model, whose multiprocessing helper went with it"),
)
# Children of this process (a local Ray's workers, vLLM's engine processes) inherit these. Python
# prints a warning's source line on a line of its own, which no pattern can tell from other output,
# so deprecation notices are silenced where they are raised. The actors of an existing cluster do
# not inherit them; the line filter above still drops the notices' first lines there.
QUIET_ENV = {"PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning"}


def noise_regex() -> str:
    return "|".join(f"(?:{pattern})" for pattern, _ in ACTOR_NOISE)


def is_noise(line: str) -> bool:
    return re.search(noise_regex(), line) is not None


def configure(verbose: bool = False) -> None:
    """Logging for the CLI: remax-ray's own INFO lines are the run's narrative; other libraries
    speak at WARNING unless ``verbose``."""
    fmt = "%(asctime)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=fmt)
    logging.getLogger("remax_ray").setLevel(logging.INFO)


def quiet_actors(verbose: bool = False) -> None:
    """Filter the actors' forwarded output (unless ``verbose``). Call it right before the command
    imports ``ray``: Ray reads the filter then, and a process that has imported it keeps its own."""
    if verbose or "ray" in sys.modules:
        return
    os.environ.setdefault("RAY_DEDUP_LOGS_SKIP_REGEX", noise_regex())
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
