"""deploy/cluster/*.yaml through Ray 2.60's own cluster-launcher code: the steps `ray up` runs on a
config before it reaches a cloud (prepare_config: defaults, legacy translation, per-type worker bounds;
validate_config: Ray's JSON schema ray-schema.json plus its cross-field rules). For the on-prem file
the whole of `ray up`'s _bootstrap_config runs, which needs no network for the local provider; the AWS
provider's bootstrap needs boto3 and an account, so it stops after validation."""

from __future__ import annotations

import copy
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
        assert starts and all("RAY_AUTH_MODE=token ray start" in c for c in starts), role
        assert not any("0.0.0.0" in c for c in prepared[role]), role
