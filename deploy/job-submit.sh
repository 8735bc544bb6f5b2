#!/usr/bin/env bash
# Submit `remax-ray train` to a running Ray cluster as a Ray job.
#   RAY_ADDRESS: the cluster's dashboard address (default http://127.0.0.1:8265, a local `ray start --head`)
#   arguments:   passed to `remax-ray train`, e.g. --config my.yaml run.steps=50
# remax-ray must be installed on every node (bash scripts/setup.sh on each, or a shared image):
# the job's entrypoint joins the cluster through RAY_ADDRESS, which Ray sets for the job.
set -euo pipefail
address=${RAY_ADDRESS:-http://127.0.0.1:8265}
# Ray 2.60's `ray start` turns on token auth and writes ~/.ray/auth_token; the job client only sends
# that token when RAY_AUTH_MODE=token ("Missing authentication token" otherwise).
if [ -z "${RAY_AUTH_MODE:-}" ] && [ -f "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" ]; then
  export RAY_AUTH_MODE=token
fi
exec ray job submit --address "$address" -- remax-ray train "$@"
