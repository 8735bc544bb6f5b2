"""Runs that survive a killed driver (resume) and a generator restarted between steps.

One deterministic configuration trains 4 steps two ways: uninterrupted; and as 2 steps, a SIGKILL of
the driver process and ``--resume latest``. The policy must come out bit-identical and the per-step
metrics identical, with every step logged once. (Generators, the reward actor and learner ranks
killed mid-run, again and again: tests/integration/test_chaos.py.)
A generator killed between steps, and back before the next one, must not serve its responses from
model.path: the driver sees its weight version and re-syncs first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from remax_ray import cli
from remax_ray.config import load_config
from remax_ray.driver.trainer import Trainer

from same_run import STEPS, assert_same_run, overrides as _overrides

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def uninterrupted(ray_session, tiny_model, prompt_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    trainer = Trainer(load_config(None, _overrides(tiny_model, prompt_file, out)))
    try:
        trainer.fit()
    finally:
        trainer.shutdown()
    return out


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "remax_ray.cli", "train", *args]


def test_sigkill_of_the_driver_then_resume_is_bit_identical(uninterrupted, ray_session, tiny_model,
                                                            prompt_file, tmp_path, capsys):
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    args = _overrides(tiny_model, prompt_file, tmp_path)
    driver = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = tmp_path / "checkpoints" / "latest"
    deadline = time.monotonic() + 300
    while not latest.exists() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)  # no handler, no cleanup: a lost node or an OOM kill
    driver.wait()
    assert latest.read_text().strip() == "step-000002", driver.stderr.read().decode()[-3000:]
    # The same command again is refused: the folder holds a run. This and the resume run in this
    # process, a driver that never saw the run (`remax-ray` exits with main's return value): a fresh
    # interpreter would only add its imports.
    capsys.readouterr()
    assert cli.main(["train", *args]) == 2
    assert "--resume latest" in capsys.readouterr().err
    assert cli.main(["train", "--resume", "latest", *args]) == 0, capsys.readouterr().err[-3000:]
    assert_same_run(tmp_path, uninterrupted)
    state = json.loads((tmp_path / "checkpoints" / "step-000004" / "run_state.json").read_text())
    assert state["step"] == STEPS and state["reference_path"] == str(tiny_model)


def _restarted(actor, old_pid: int, timeout_s: float = 300.0) -> int:
    """The pid of ``actor``'s new process once Ray has restarted it (its engine built anew)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
            if pid != old_pid:
                return pid
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass  # not yet seen dead, or still restarting
        time.sleep(0.5)
    raise TimeoutError(f"the actor was not restarted within {timeout_s:.0f} s")


def test_a_generator_restarted_between_steps_serves_the_synced_weights(ray_session, tiny_model, prompt_file,
                                                                       tmp_path):
    """A generator that dies after a sync and is back before the next generate answers that generate
    from model.path without any error; its weight version shows it, and the step re-syncs first."""
    cfg = load_config(None, [*_overrides(tiny_model, prompt_file, tmp_path), "run.steps=2",
                             "cluster.max_actor_restarts=1"])
    trainer = Trainer(cfg)
    try:
        first = trainer.step()  # the learner updates, then syncs its weights into the generator
        generator = trainer.actors.generators[0]
        pid = ray.get(generator.__ray_call__.remote(lambda self: os.getpid()))
        os.kill(pid, signal.SIGKILL)
        _restarted(generator, pid)
        second = trainer.step()
    finally:
        trainer.shutdown()
    assert first["logp_diff"] < 1e-4
    assert second["logp_diff"] < 1e-4  # sampled by the learner's weights, not by model.path
    assert second["generator_resyncs"] == 1.0 and second["actor_retries"] == 0.0
