from test_job_submit import head, BIN, _submit, _run_job  # noqa: F401
import secrets

def test_failing_job_prints_logs_and_head_stops(head):
    job_id = f"bad-{secrets.token_hex(3)}"
    _submit(head, [str(BIN / "ray"), "job", "submit", "--address", head.dashboard, "--no-wait",
                   "--submission-id", job_id, "--runtime-env", "deploy/runtime-env.yaml", "--",
                   "python", "-m", "remax_ray.cli", "train", "algo.kl_coeff=1"])
    _run_job(head, job_id, 60)
