"""deploy/docker/Dockerfile.* and scripts/setup.sh's GPU branch: what the images install and in which
order (no Docker here: the Dockerfiles' instructions are parsed), that the CUDA image says which CUDA
and driver it needs, that the two GPU installs are one set, and that the images carry the builtin
assets (tests/unit/test_assets_offline.py runs the assets step offline from such a folder).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from remax_ray.assets.home import PREBUILT_ENV

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
SETUP = REPO / "scripts" / "setup.sh"
TEST_TOOLS = {"pytest", "import-linter"}  # setup.sh's venv runs the tests; the image does not


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = "\n".join(lines).replace("\\\n", " ")
    return [(m.group(1), m.group(2).strip()) for m in re.finditer(r"^([A-Z]+)\s+(.*)$", text, re.MULTILINE)]


def _pip_packages(command: str) -> list[set[str]]:
    """The package names of each `pip install` in a shell command (constraint and option args dropped)."""
    out = []
    lines = [ln for ln in command.splitlines() if not ln.lstrip().startswith("#")]
    for part in re.split(r"&&|\n", "\n".join(lines)):
        argv = shlex.split(part)
        if "pip" not in argv or "install" not in argv:
            continue
        args = argv[argv.index("install") + 1:]
        names, skip = set(), False
        for a in args:
            if skip:
                skip = False
            elif a in ("-c", "-r", "--extra-index-url", "--index-url"):
                skip = True
            elif not a.startswith("-"):
                names.add(re.split(r"[\[=<>]", a)[0].lower())
        out.append(names)
    return out


def _setup_branches() -> tuple[str, str, str]:
    """scripts/setup.sh's GPU branch, CPU branch and the common part after them."""
    text = SETUP.read_text()
    body = text.split("if $gpu; then", 1)[1]
    gpu, rest = body.split("\nelse\n", 1)
    cpu, tail = rest.split("\nfi\n", 1)
    return gpu, cpu, tail


def test_the_cuda_image_names_its_cuda_and_driver():
    text = (DOCKER / "Dockerfile.cuda").read_text()
    assert "CUDA 13" in text and "driver >= 580" in text and "CUDA 12" not in text
    for other in (REPO / "deploy" / "cluster" / "aws.yaml", SETUP):
        assert "CUDA 12" not in other.read_text(), other


def test_both_gpu_installs_are_one_set_with_tensorboard():
    gpu, _, _ = _setup_branches()
    setup_sets = _pip_packages(gpu.replace("\\\n", " "))
    image = next(args for op, args in _instructions(DOCKER / "Dockerfile.cuda")
                 if op == "RUN" and " vllm " in args)
    image_sets = _pip_packages(image)
    assert [s - TEST_TOOLS for s in setup_sets] == image_sets
    assert "tensorboard" in image_sets[0]  # the metrics sink's TensorBoard event files
    assert TEST_TOOLS <= setup_sets[0]


def test_only_the_cpu_branch_removes_torchvision_and_torchaudio():
    """CUDA vLLM 0.32.0 requires torchvision==0.28.0 and torchaudio==2.11.0 (its wheel's metadata)."""
    gpu, cpu, tail = _setup_branches()
    assert "uninstall" not in gpu and "uninstall" not in tail
    assert "uninstall" in cpu and all(p in cpu for p in ("torchvision", "torchaudio"))
    image = (DOCKER / "Dockerfile.cuda").read_text()
    assert "uninstall" not in image


def _run_setup(tmp_path: Path, driver: str) -> subprocess.CompletedProcess:
    """scripts/setup.sh from a copy in an empty folder (so no venv lands in this checkout), with an
    nvidia-smi that sees one GPU and reports ``driver``; PYTHON=false stops it at the venv step."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SETUP, tmp_path / "scripts" / "setup.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(
        '#!/usr/bin/env bash\nif [ "$1" = -L ]; then echo "GPU 0: NVIDIA H100"; else echo "' + driver + '"; fi\n')
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHON": "false"}
    return subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], env=env, capture_output=True,
                          text=True, timeout=60)


def test_setup_refuses_a_driver_older_than_cuda_13_needs(tmp_path):
    done = _run_setup(tmp_path, "570.172.08")
    assert done.returncode == 1 and "NVIDIA driver 570.172.08 is older than 580" in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_setup_goes_on_with_a_580_driver(tmp_path):
    done = _run_setup(tmp_path, "580.65.06")
    assert "older than 580" not in done.stderr and done.returncode != 0  # stopped by PYTHON=false


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cuda", "Dockerfile.cpu"])
def test_the_image_builds_the_builtin_assets_where_runs_copy_them_from(dockerfile):
    steps = _instructions(DOCKER / dockerfile)
    env: dict[str, str] = {}
    installed = False
    for op, args in steps:
        if op == "ENV":
            env.update(dict(kv.split("=", 1) for kv in shlex.split(args)))
        if op == "RUN" and "pip install" in args and re.search(r"--no-deps \.(\s|$)", args):
            installed = True  # remax-ray itself
        if op == "RUN" and "remax_ray.cli assets" in args:
            break
    else:
        pytest.fail(f"{dockerfile} does not run `python -m remax_ray.cli assets`")
    assert installed  # the package is there before its assets step
    # Built into the folder runs copy from (REMAX_RAY_HOME is that folder during the build).
    assert env[PREBUILT_ENV] == env["REMAX_RAY_HOME"] == "/opt/remax-ray/assets"
    assert env["HF_HUB_OFFLINE"] == "1"  # the builders read wheels and the corpus, never a model hub
    workdir = next(args for op, args in steps if op == "WORKDIR")
    assert env[PREBUILT_ENV].startswith(workdir + "/")


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cuda", "Dockerfile.cpu"])
def test_the_image_runs_as_a_numeric_non_root_user_that_owns_its_asset_folder(dockerfile):
    """Root only for the system installs; the assets step and every container run as uid 1000, which
    owns the asset folder, so a run can add an asset the image lacks (builtin:tiny)."""
    steps = _instructions(DOCKER / dockerfile)
    users = [i for i, (op, _) in enumerate(steps) if op == "USER"]
    assert users, f"{dockerfile} runs as root"
    last = users[-1]
    uid, gid = steps[last][1].split(":")  # numeric: a pod's runAsNonRoot can verify it
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0 and int(gid) != 0
    before = " ".join(args for op, args in steps[:last] if op == "RUN")
    after = [args for op, args in steps[last + 1:] if op == "RUN"]
    assert f"--uid {uid}" in before and f"--gid {gid}" in before
    env = dict(kv.split("=", 1) for op, args in steps if op == "ENV" for kv in shlex.split(args))
    assert re.search(rf"chown \S+ {re.escape(env[PREBUILT_ENV])}", before)
    assert all("apt-get" not in a and "pip install" not in a for a in after)  # root's work is done before
    assert any("remax_ray.cli assets" in a for a in after)
