"""deploy/job-submit.sh with REMAX_JOB_RETRIES: a job that ends FAILED is submitted again with
``--resume auto``, up to N times; anything else is not. A scripted ``ray`` first on PATH plays the
cluster (each submission's outcome, and what ``ray job status`` then says), so nothing starts Ray."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from remax_ray.cli import _parser

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "job-submit.sh"
CONFIG = "deploy/configs/tiny-cpu.yaml"

# What `ray job status` prints for each outcome, as Ray 2.60's CLI words it (job/cli.py _log_job_status,
# job_supervisor.py's status message); "down": the cluster does not answer.
_FAKE_RAY = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$FAKE_RAY_LOG"
if [ "$2" = submit ]; then
  n=$(grep -c '^job submit' "$FAKE_RAY_LOG")
  sed -n "${n}p" "$FAKE_RAY_PLAN" > "$FAKE_RAY_LOG.outcome"
  [ "$(cat "$FAKE_RAY_LOG.outcome")" = ok ] && exit 0
  exit 1
fi
id=${!#}
exited="Status message: Job entrypoint command failed with exit code"
case $(cat "$FAKE_RAY_LOG.outcome") in
  failed) printf '%s\n' "Job '$id' failed" "$exited -9, last available logs" ;;
  config) printf '%s\n' "Job '$id' failed" "$exited 2, last available logs" ;;
  stopped) echo "Job '$id' was stopped" ;;
  down) echo "ConnectionError: Failed to connect to Ray" >&2; exit 1 ;;
esac
"""


def _run(tmp_path: Path, plan: list[str], *args: str, **env: str) -> tuple[int, list[list[str]], str]:
    """(exit status, the argv of each `ray job submit`, the script's stderr)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ray").write_text(_FAKE_RAY)
    (bin_dir / "ray").chmod(0o755)
    (tmp_path / "plan").write_text("".join(f"{p}\n" for p in plan))
    log = tmp_path / "ray.log"
    log.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "REMAX_"))}
    base.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_RAY_LOG=str(log),
                FAKE_RAY_PLAN=str(tmp_path / "plan"), HOME=str(tmp_path / "home"))
    done = subprocess.run(["bash", str(SCRIPT), *args], env={**base, **env}, cwd=tmp_path, timeout=60,
                          capture_output=True, text=True)
    calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, [c for c in calls if c[:2] == ["job", "submit"]], done.stderr


def _entry(argv: list[str]) -> list[str]:
    """The `remax-ray train` arguments of one submission."""
    return argv[argv.index("--") + 5:]  # after "-- python -m remax_ray.cli train"


def _submission_id(argv: list[str]) -> str:
    return argv[argv.index("--submission-id") + 1]


def test_no_retries_is_the_plain_submission(tmp_path):
    """REMAX_JOB_RETRIES=0 (the default) runs `ray job submit` once, with the caller's flags as they are."""
    flags = "--no-wait --submission-id s1"
    rc, unset, _ = _run(tmp_path, ["failed"], "--config", CONFIG, REMAX_SUBMIT_FLAGS=flags)
    rc0, zero, _ = _run(tmp_path, ["failed"], "--config", CONFIG, REMAX_SUBMIT_FLAGS=flags, REMAX_JOB_RETRIES="0")
    assert rc == rc0 == 1 and unset == zero and len(zero) == 1
    assert zero[0][:9] == ["job", "submit", "--address", "http://127.0.0.1:8265", "--runtime-env",
                           "deploy/runtime-env.yaml", "--no-wait", "--submission-id", "s1"]
    assert _entry(zero[0]) == ["--config", CONFIG]


def test_a_failed_job_is_submitted_again_with_resume_auto(tmp_path):
    rc, calls, err = _run(tmp_path, ["failed", "failed", "ok"], "--config", CONFIG, "--overwrite", "run.steps=2",
                          REMAX_JOB_RETRIES="3", REMAX_SUBMIT_FLAGS="--submission-id s1 --entrypoint-num-cpus 1")
    assert rc == 0 and len(calls) == 3
    assert [_submission_id(c) for c in calls] == ["s1", "s1-retry1", "s1-retry2"]  # an id is used once
    assert all("--entrypoint-num-cpus" in c for c in calls)
    assert _entry(calls[0]) == ["--config", CONFIG, "--overwrite", "run.steps=2"]  # the first as given
    for call in calls[1:]:  # --overwrite would delete what the retry resumes
        assert _entry(call) == ["--config", CONFIG, "run.steps=2", "--resume", "auto"]
        args = _parser().parse_args(["train", *_entry(call)])
        assert args.resume == "auto" and not args.overwrite and args.overrides == ["run.steps=2"]
    attempts = [line for line in err.splitlines() if "attempt" in line]
    assert [line.split(",")[0] for line in attempts] == [
        f"job-submit.sh: attempt {i} of 4" for i in (1, 2, 3)]
    assert err.count("submitting again with --resume auto") == 2


def test_the_retries_end_with_the_last_failure(tmp_path):
    rc, calls, err = _run(tmp_path, ["failed", "failed", "failed"], "--config", CONFIG, "--resume", "latest",
                          REMAX_JOB_RETRIES="1")
    assert rc == 1 and len(calls) == 2
    assert _submission_id(calls[1]) == _submission_id(calls[0]) + "-retry1"
    assert _entry(calls[1]) == ["--config", CONFIG, "--resume", "auto"]  # in place of the given --resume
    assert "no retries left (REMAX_JOB_RETRIES=1)" in err


@pytest.mark.parametrize("outcome", ["stopped", "config", "down"])
def test_only_a_failed_job_is_submitted_again(tmp_path, outcome):
    """Stopped on purpose, refused for its configuration (a retry fails the same way), or never taken by
    an unreachable cluster: one submission, and its exit status."""
    rc, calls, err = _run(tmp_path, [outcome, "ok"], "--config", CONFIG, REMAX_JOB_RETRIES="2")
    assert rc == 1 and len(calls) == 1
    assert "not submitting again" in err


@pytest.mark.parametrize("flags, args, message", [
    ("--no-wait", ["--config", CONFIG], "drop --no-wait"),
    ("", ["--resume", "/runs/a/checkpoints/step-000004"], "pass --config too"),
])
def test_what_retries_cannot_do_is_refused_before_submitting(tmp_path, flags, args, message):
    rc, calls, err = _run(tmp_path, ["failed"], *args, REMAX_JOB_RETRIES="1", REMAX_SUBMIT_FLAGS=flags)
    assert rc == 2 and calls == [] and message in err


def test_retries_must_be_a_count(tmp_path):
    rc, calls, err = _run(tmp_path, ["ok"], REMAX_JOB_RETRIES="two")
    assert rc == 2 and calls == [] and "REMAX_JOB_RETRIES must be a whole number" in err
