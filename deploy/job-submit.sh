#!/usr/bin/env bash
# Submit `remax-ray train` to a running Ray cluster as a Ray job, shipping this repository with it
# (deploy/runtime-env.yaml), so the cluster's nodes need Ray, torch, transformers and vLLM but not
# remax-ray itself.
#   RAY_ADDRESS:   the cluster's dashboard address (default http://127.0.0.1:8265, a local `ray start --head`)
#   REMAX_RUNTIME_ENV: the runtime env file (default deploy/runtime-env.yaml)
#   REMAX_PYTHON:  the cluster's interpreter that runs the entrypoint (default python)
#   REMAX_SUBMIT_FLAGS: extra `ray job submit` flags, e.g. "--no-wait --submission-id remax-1"
#   REMAX_JOB_RETRIES: submit again this many times after the job ends FAILED (default 0: submit once)
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
retries=${REMAX_JOB_RETRIES:-0}
if ! [[ $retries =~ ^[0-9]+$ ]]; then
  echo "job-submit.sh: REMAX_JOB_RETRIES must be a whole number (0: submit once), not '$retries'" >&2
  exit 2
fi
retries=$((10#$retries))
if [ "$retries" -eq 0 ]; then
  # shellcheck disable=SC2086  # REMAX_SUBMIT_FLAGS holds several flags
  exec ray job submit --address "$address" --runtime-env "${REMAX_RUNTIME_ENV:-deploy/runtime-env.yaml}" \
    ${REMAX_SUBMIT_FLAGS:-} -- "${REMAX_PYTHON:-python}" -m remax_ray.cli train "$@"
fi

# Retries. A Ray job never runs its entrypoint again by itself: a driver that dies (OOM, SIGKILL) ends
# the job FAILED. So this script submits again, with `--resume auto`: the run continues from the newest
# complete checkpoint in run.output_dir (or starts afresh where none was saved). Only a job that ended
# FAILED is submitted again: not one stopped by `ray job stop`, not a submission the cluster never
# took (unreachable, a bad runtime env), not a configuration error (exit 2, the same each time).
read -r -a flags <<< "${REMAX_SUBMIT_FLAGS:-}"
base="remax-train-$(date -u +%Y%m%d-%H%M%S)-$RANDOM"
kept=()
for ((i = 0; i < ${#flags[@]}; i++)); do
  case ${flags[i]} in
    --no-wait)
      echo "job-submit.sh: REMAX_JOB_RETRIES needs to see how the job ends: drop --no-wait" >&2
      exit 2 ;;
    --submission-id) base=${flags[i + 1]:?--submission-id needs a value}; i=$((i + 1)) ;;
    --submission-id=*) base=${flags[i]#--submission-id=} ;;
    *) kept+=("${flags[i]}") ;;
  esac
done
# Each retry: the same arguments, without --overwrite (it would delete what the retry resumes) and
# with --resume auto in place of any --resume. auto finds the run through the command's config, so a
# `--resume PATH` that brought its checkpoint's config needs --config as well.
again=() has_config=false resume_path=false
for ((i = 1; i <= $#; i++)); do
  arg=${!i}
  case $arg in
    --overwrite) ;;
    --resume) i=$((i + 1)); [[ ${!i:-} =~ ^(auto|latest)$ ]] || resume_path=true ;;
    --resume=*) [[ ${arg#--resume=} =~ ^(auto|latest)$ ]] || resume_path=true ;;
    --config | --config=*) has_config=true; again+=("$arg") ;;
    *) again+=("$arg") ;;
  esac
done
again+=(--resume auto)
if $resume_path && ! $has_config; then
  echo "job-submit.sh: a retry resumes with --resume auto, which finds the run through --config's" \
    "run.output_dir: with --resume PATH and REMAX_JOB_RETRIES, pass --config too (e.g. the checkpoint's" \
    "config.yaml)" >&2
  exit 2
fi
args=("$@")
for ((attempt = 0; attempt <= retries; attempt++)); do
  id=$base
  [ "$attempt" -eq 0 ] || id=$base-retry$attempt
  echo "job-submit.sh: attempt $((attempt + 1)) of $((retries + 1)), submission $id:" \
    "remax-ray train ${args[*]+${args[*]}}" >&2
  rc=0
  # ${a[@]+"${a[@]}"} expands an empty array without tripping set -u on bash < 4.4 (macOS's /bin/bash).
  ray job submit --address "$address" --runtime-env "${REMAX_RUNTIME_ENV:-deploy/runtime-env.yaml}" \
    ${kept[@]+"${kept[@]}"} --submission-id "$id" \
    -- "${REMAX_PYTHON:-python}" -m remax_ray.cli train ${args[@]+"${args[@]}"} || rc=$?
  [ "$rc" -ne 0 ] || exit 0
  # `ray job submit` exits 1 both for a job that ended FAILED and for one it could not submit.
  if ! status=$(ray job status --address "$address" "$id" 2>&1) || ! grep -qF "Job '$id' failed" <<< "$status"; then
    echo "job-submit.sh: submission $id did not end FAILED (exit $rc); not submitting again" >&2
    exit "$rc"
  fi
  if grep -qE "failed with exit code 2[,.]" <<< "$status"; then
    echo "job-submit.sh: submission $id failed on its configuration (exit 2); not submitting again" >&2
    exit "$rc"
  fi
  if [ "$attempt" -lt "$retries" ]; then
    echo "job-submit.sh: submission $id FAILED; submitting again with --resume auto" >&2
  fi
  args=("${again[@]}")
done
echo "job-submit.sh: submission $id FAILED; no retries left (REMAX_JOB_RETRIES=$retries)" >&2
exit "$rc"
