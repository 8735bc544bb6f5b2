"""The algorithm core must be importable without the heavy runtime deps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_algo_import_loads_no_ray_or_vllm() -> None:
    code = (
        "import sys, remax_ray.algo\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'vllm', 'transformers'))\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"heavy modules loaded: {proc.stdout.strip()}"


def test_public_names_exported() -> None:
    import remax_ray.algo as algo

    for name in algo.__all__:
        assert hasattr(algo, name), name
    assert {"token_logprobs", "remax_advantages", "kl_loss", "aggregate", "ESTIMATORS"} <= set(algo.__all__)
