#!/usr/bin/env bash
# Submit `remax-ray train` to a running Ray cluster as a Ray job, shipping this repository with it
# (deploy/runtime-env.yaml), so the cluster's nodes need Ray, torch, transformers and vLLM but not
# remax-ray itself.
#   RAY_ADDRESS:   the cluster's dashboard address (default http://127.0.0.1:8265, a local `ray start --head`)
#   REMAX_RUNTIME_ENV: the runtime env file (default deploy/runtime-env.yaml)
#   REMAX_PYTHON:  the cluster's interpreter that runs the entrypoint (default python)
#   REMAX_SUBMIT_FLAGS: extra `ray job submit` flags, e.g. "--no-wait --submission-id remax-1"
#   arguments:     passed to `remax-ray train`, e.g. --config deploy/configs/tiny-cpu.yaml run.steps=50
# The entrypoint is `python -m remax_ray.cli`, not the `remax-ray` console script: that script exists
# only where the package is pip-installed, while the module is importable from the shipped
# working_dir (Ray puts it first on PYTHONPATH and starts the entrypoint in it). Config paths are
# therefore relative to the repository root, on the cluster as here.
set -euo pipefail
# working_dir "." in the runtime env means the folder this command runs in: the repository root.
cd "$(dirname "$0")/.."
address=${RAY_ADDRESS:-http://127.0.0.1:8265}
# Token auth (Ray 2.60): the job client sends a token only when RAY_AUTH_MODE=token. A token given
# for this submission (RAY_AUTH_TOKEN, e.g. from KubeRay's Secret, or RAY_AUTH_TOKEN_PATH) turns it
# on here. ~/.ray/auth_token alone does not: a local `ray.init()` writes one for its own cluster, and
# it is not the remote cluster's. Set RAY_AUTH_MODE=token to send that file (a cluster started with
# it, e.g. `ray up` with RAY_AUTH_MODE=token and the file shipped to its nodes).
if [ -z "${RAY_AUTH_MODE:-}" ] && { [ -n "${RAY_AUTH_TOKEN:-}" ] || [ -n "${RAY_AUTH_TOKEN_PATH:-}" ]; }; then
  export RAY_AUTH_MODE=token
fi
# shellcheck disable=SC2086  # REMAX_SUBMIT_FLAGS holds several flags
exec ray job submit --address "$address" --runtime-env "${REMAX_RUNTIME_ENV:-deploy/runtime-env.yaml}" \
  ${REMAX_SUBMIT_FLAGS:-} -- "${REMAX_PYTHON:-python}" -m remax_ray.cli train "$@"
