"""deploy/cluster/*.yaml through Ray 2.60's own cluster-launcher code: the steps `ray up` runs on a
config before it reaches a cloud (prepare_config: defaults, legacy translation, per-type worker bounds;
validate_config: Ray's JSON schema ray-schema.json plus its cross-field rules). For the on-prem file
the whole of `ray up`'s _bootstrap_config runs, which needs no network for the local provider; the AWS
provider's bootstrap needs boto3 and an account, so it stops after validation."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import jsonschema
import pytest
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config

from remax_ray.config import load_config

REPO = Path(__file__).resolve().parents[2]
AWS = REPO / "deploy" / "cluster" / "aws.yaml"
ONPREM = REPO / "deploy" / "cluster" / "onprem.yaml"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _ray_up_checks(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_aws_file_passes_rays_validation_with_cpu_head_and_autoscaled_gpu_workers():
    prepared = _ray_up_checks(_load(AWS))
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0
    (gpu_name,) = [n for n, t in types.items() if t["resources"].get("GPU", 0) > 0]
    gpu = types[gpu_name]
    assert 0 == gpu["min_workers"] < gpu["max_workers"] <= prepared["max_workers"]  # scales from zero
    assert gpu["node_config"]["InstanceType"] and prepared["provider"]["type"] == "aws"


@pytest.mark.parametrize("path", [AWS, ONPREM], ids=["aws", "onprem"])
def test_setup_commands_install_remax_ray_from_the_mounted_checkout(path):
    prepared = _ray_up_checks(_load(path))
    # ray up copies LOCAL (relative to the folder it runs in: the repo root) to REMOTE on every node.
    (remote, local), = [(r, loc) for r, loc in prepared["file_mounts"].items() if r == "~/remax-ray"]
    assert (REPO / local / "scripts" / "setup.sh").is_file()
    assert ".venv" in prepared["rsync_exclude"]  # gigabytes, and built per node anyway
    # prepare_config prepends setup_commands to each role's own: the head and every worker install.
    for role in ("head_setup_commands", "worker_setup_commands"):
        install = [c for c in prepared[role] if "scripts/setup.sh" in c]
        assert install and all(c.startswith(f"cd {remote} && ") for c in install), role
        # Ray's start commands then run the venv's `ray`: setup activates it for later logins.
        assert any("remax-ray/.venv/bin/activate" in c for c in prepared[role]), role
    assert any("--metrics-export-port=8080" in c for c in prepared["head_start_ray_commands"])


def test_onprem_file_goes_through_ray_ups_whole_config_bootstrap():
    config = _load(ONPREM)
    resolved = _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
    # The local provider turns the host list into one node type whose bounds are the worker count.
    (node_type,) = resolved["available_node_types"].values()
    n_hosts = len(config["provider"]["worker_ips"])
    assert n_hosts >= 1 and node_type["min_workers"] == node_type["max_workers"] == n_hosts
    assert resolved["provider"]["head_ip"] not in config["provider"]["worker_ips"]


def test_multinode_config_fits_the_aws_cluster_at_full_scale():
    """deploy/configs/gpu-multinode.yaml asks for what aws.yaml's GPU workers offer at max_workers."""
    prepared = _ray_up_checks(_load(AWS))
    gpu = next(t for t in prepared["available_node_types"].values() if t["resources"].get("GPU", 0))
    cfg = load_config(str(REPO / "deploy" / "configs" / "gpu-multinode.yaml"), [])
    gpus = cfg.rollout.num_generators + 1  # one per generator, one for the learner
    cpus = cfg.rollout.num_generators * cfg.rollout.num_cpus_per_generator + cfg.learner.num_cpus
    assert gpus == gpu["resources"]["GPU"] * gpu["max_workers"]
    assert cpus <= gpu["resources"]["CPU"] * gpu["max_workers"]
    single = load_config(str(REPO / "deploy" / "configs" / "gpu-1node-8x.yaml"), [])
    assert single.rollout.num_generators + 1 == gpu["resources"]["GPU"]  # one node of the same type


def test_a_misspelt_key_is_rejected_by_rays_schema():
    broken = _load(AWS)
    broken["max_worker"] = broken.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        _ray_up_checks(broken)


def test_a_wrong_type_is_rejected_by_rays_schema():
    broken = _load(AWS)
    broken["available_node_types"]["gpu_worker"]["min_workers"] = "zero"
    with pytest.raises(jsonschema.ValidationError, match="zero"):
        _ray_up_checks(broken)


def test_min_workers_above_the_global_bound_is_rejected():
    broken = _load(AWS)
    broken["available_node_types"]["gpu_worker"]["min_workers"] = broken["max_workers"] + 1
    broken["available_node_types"]["gpu_worker"]["max_workers"] = broken["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        _ray_up_checks(broken)


def test_onprem_without_a_head_ip_is_rejected():
    broken = _load(ONPREM)
    del broken["provider"]["head_ip"]
    with pytest.raises(click.ClickException, match="head_ip"):
        _bootstrap_config(broken, no_config_cache=True)


@pytest.mark.parametrize("path", [AWS, ONPREM], ids=["aws", "onprem"])
def test_every_node_starts_ray_with_token_auth_and_a_local_dashboard(path):
    """Ray 2.60's `ray start` turns token auth on only where a token file already exists (a fresh
    node has none): the file from the operator's machine goes to every node, and RAY_AUTH_MODE=token
    makes each node require it. The dashboard stays on the head's localhost (`ray dashboard` tunnels)."""
    prepared = _ray_up_checks(_load(path))
    assert prepared["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for role in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in prepared[role] if "ray start" in c]
        assert starts and all(re.search(r"RAY_AUTH_MODE=token (\S+=\S+ )*ray start", c) for c in starts), role
        assert not any("0.0.0.0" in c for c in prepared[role]), role


SHARED, HOME = "/mnt/shared", "/mnt/shared/remax-ray"


@pytest.mark.parametrize("path", [AWS, ONPREM], ids=["aws", "onprem"])
def test_every_node_mounts_the_shared_storage_and_starts_ray_with_the_asset_home_on_it(path):
    """gpu-multinode.yaml's paths must mean the same on every node: the driver prepares the builtin
    assets in REMAX_RAY_HOME and hands the actors those folders."""
    prepared = _ray_up_checks(_load(path))
    for role in ("head", "worker"):
        setup = prepared[f"{role}_setup_commands"]
        mounts = [c for c in setup if re.search(rf"mount -t nfs4 .* {SHARED}\)?$", c)]
        assert len(mounts) == 1 and f"mountpoint -q {SHARED} ||" in mounts[0], role
        owned = [c for c in setup if "chown" in c and HOME in c]
        assert owned and setup.index(owned[0]) > setup.index(mounts[0]), role  # writable once mounted
        starts = [c for c in prepared[f"{role}_start_ray_commands"] if "ray start" in c]
        assert starts and all(f"REMAX_RAY_HOME={HOME} ray start" in c for c in starts), role
    assert "nfs-common" in path.read_text()  # the NFS client: installed (aws) or a stated prerequisite


def test_the_efs_file_system_is_in_the_clusters_region_and_its_placeholder_documented():
    config = _load(AWS)
    (mount,) = [c for c in config["setup_commands"] if "mount -t nfs4" in c]
    fs_id, region = re.search(r"(fs-[0-9a-f]+)\.efs\.([a-z0-9-]+)\.amazonaws\.com:/ ", mount).groups()
    assert region == config["provider"]["region"]
    assert f"in place of {fs_id}" in AWS.read_text().split("cluster_name:")[0]


def test_the_multinode_config_opens_only_paths_on_the_shared_storage(monkeypatch):
    from remax_ray.assets.home import resolve_dataset, resolve_reward_model_path

    cfg = load_config(str(REPO / "deploy" / "configs" / "gpu-multinode.yaml"), [])
    monkeypatch.setenv("REMAX_RAY_HOME", HOME)  # what every node's `ray start` sets
    assert cfg.reward.model_path.startswith("builtin:") and cfg.run.dataset.startswith("builtin:")
    with pytest.raises(FileNotFoundError, match=f"{HOME}/sentiment-rm"):  # not prepared here
        resolve_reward_model_path(cfg.reward.model_path)
    with pytest.raises(FileNotFoundError, match=f"{HOME}/movie-reviews"):
        resolve_dataset(cfg.run.dataset, "train")
    assert all(p.startswith(SHARED + "/") for p in (cfg.model.path, cfg.run.output_dir))


def _fake_aws(tmp_path: Path) -> Path:
    """An `aws` first on PATH that records its calls and keeps the role and profile it made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "aws").write_text(f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
state, args = Path(os.environ["FAKE_AWS_STATE"]), sys.argv[1:]
with open(state / "calls.jsonl", "a") as f:
    f.write(json.dumps(args) + "\\n")
cmd, opt = args[1], lambda k: args[args.index(k) + 1]
if cmd == "get-role" and not (state / "role").exists():
    sys.exit(254)
if cmd == "create-role":
    (state / "role").write_text(opt("--assume-role-policy-document"))
if cmd == "get-instance-profile":
    if not (state / "profile").exists():
        sys.exit(254)
    if "--query" in args:
        print((state / "profile").read_text())
if cmd == "create-instance-profile":
    (state / "profile").write_text("")
if cmd == "add-role-to-instance-profile":
    (state / "profile").write_text(opt("--role-name"))
""")
    (bin_dir / "aws").chmod(0o755)
    return bin_dir


def _run_iam_script(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{_fake_aws(tmp_path)}{os.pathsep}{os.environ['PATH']}",
           "FAKE_AWS_STATE": str(tmp_path)}
    subprocess.run(["bash", str(REPO / "deploy" / "cluster" / "aws-iam.sh")], env=env, check=True, timeout=60)
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_head_profile_lets_the_autoscaler_resolve_the_workers_ami(tmp_path):
    """EC2 resolves `resolve:ssm:` with the launcher's ssm:GetParameters, and the autoscaler on the
    head launches the workers: the head's profile (aws-iam.sh) must grant it; Ray's default does not."""
    config = _load(AWS)
    types = config["available_node_types"]
    profile = types[config["head_node_type"]]["node_config"]["IamInstanceProfile"]["Name"]
    calls = _run_iam_script(tmp_path)
    made = {c[1]: c for c in calls}
    assert made["create-role"][made["create-role"].index("--role-name") + 1] == profile
    trust = json.loads((tmp_path / "role").read_text())
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert "arn:aws:iam::aws:policy/AmazonEC2FullAccess" in made["attach-role-policy"]
    policy = json.loads(made["put-role-policy"][made["put-role-policy"].index("--policy-document") + 1])
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "ssm:GetParameters"
    for name, node_type in types.items():
        image = node_type["node_config"]["ImageId"]
        assert image.startswith("resolve:ssm:"), name
        arn = f"arn:aws:ssm:{config['provider']['region']}::parameter{image.removeprefix('resolve:ssm:')}"
        assert fnmatch.fnmatchcase(arn, statement["Resource"]), (name, arn)
    assert (tmp_path / "profile").read_text() == profile  # the role is in the instance profile
    assert all("IamInstanceProfile" not in t["node_config"] for n, t in types.items()
               if n != config["head_node_type"])  # no worker profile: the head needs no iam:PassRole
    again = [c[1] for c in _run_iam_script(tmp_path)]  # safe to run again: nothing made twice
    assert not {"create-role", "create-instance-profile", "add-role-to-instance-profile"} & set(again)


CHECKPOINT = "docs/repro/sentiment/remax-seed0/checkpoints/step-000050/model.safetensors"
IGNORED = (CHECKPOINT, "bench/.trl/run/adapter.safetensors")
COPIED = ("remax_ray/cli.py", "deploy/configs/gpu-multinode.yaml")


@pytest.mark.parametrize("path", [AWS, ONPREM], ids=["aws", "onprem"])
def test_ray_ups_rsync_skips_what_gitignore_lists(path):
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    prepared = _ray_up_checks(_load(path))
    assert prepared["rsync_filter"] == [".gitignore"]
    args = SSHCommandRunner._create_rsync_filter_args(None, {"rsync_exclude": prepared["rsync_exclude"],
                                                             "rsync_filter": prepared["rsync_filter"]})
    assert ["--filter", "dir-merge,- .gitignore"] == args[-2:]
    # the patterns rsync reads from the checkout's .gitignore, as git reads them
    for rel in (*IGNORED, *COPIED):
        ignored = subprocess.run(["git", "check-ignore", "--no-index", "-q", rel], cwd=REPO).returncode == 0
        assert ignored == (rel in IGNORED), rel


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_rsync_with_rays_filter_arguments_leaves_the_checkpoints_behind(tmp_path):
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    prepared = _ray_up_checks(_load(AWS))
    src, dst = tmp_path / "checkout", tmp_path / "node"
    for rel in (*IGNORED, *COPIED, ".venv/bin/python"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x")
    shutil.copy(REPO / ".gitignore", src / ".gitignore")
    args = SSHCommandRunner._create_rsync_filter_args(None, prepared)
    subprocess.run(["rsync", "-a", *args, f"{src}/", str(dst)], check=True, timeout=60)
    assert all((dst / rel).is_file() for rel in COPIED)
    assert not any((dst / rel).exists() for rel in (*IGNORED, ".venv/bin/python"))
