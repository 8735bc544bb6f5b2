"""The KubeRay operator's admission rules for RayCluster and RayJob specs, transcribed from KubeRay
v1.7.0 (ray-project/kuberay master at the time, identical in these files):
``ray-operator/controllers/ray/utils/validation.go`` (ValidateRayClusterSpec / ValidateRayJobSpec /
the metadata checks; a spec that fails them gets the event ``InvalidRayClusterSpec`` or
``InvalidRayJobSpec`` and no pods), ``ray-operator/pkg/webhooks/v1/raycluster_webhook.go`` (unique
worker group names) and ``utils/util.go`` (GetWorkerGroupDesiredReplicas clamps ``replicas`` into
[minReplicas, maxReplicas] without a word, which this checker reports, so that what a manifest says
is what runs). Each message is the operator's own, minus Go formatting.

The rules on features a manifest here does not use (GCS fault tolerance, the history server, TLS,
NetworkPolicy, deletion strategies, batch schedulers) are reduced to "needs a feature gate" or
"not checked here", so a manifest that starts using one fails until its rules are transcribed.
"""

from __future__ import annotations

import re

import yaml

MAX_RAYCLUSTER_NAME = 53  # utils.MaxRayClusterNameLength: 63 - len("-serve-svc")
MAX_RAYJOB_NAME = MAX_RAYCLUSTER_NAME - 6  # the cluster's name gets a "-xxxxx" suffix
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
V2_ENV = "RAY_enable_autoscaler_v2"
# Behind feature gates that are off by default in KubeRay v1.7.0 (pkg/features).
GATED = {"networkPolicy": "RayClusterNetworkPolicy", "tlsOptions": "RayClusterMTLS",
         "historyServerOptions": "RayClusterHistoryServer"}
NOT_CHECKED = ("gcsFaultToleranceOptions",)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def _env(container: dict, name: str) -> str | None:
    return next((e.get("value", "") for e in container.get("env", []) if e["name"] == name), None)


def autoscaling(spec: dict) -> bool:
    return spec.get("enableInTreeAutoscaling") is True


def autoscaler_v2(spec: dict) -> bool:
    return (spec.get("autoscalerOptions") or {}).get("version") == "v2"


def cluster_spec_errors(spec: dict) -> list[str]:
    """ValidateRayClusterSpec and the webhook's group-name rule: [] when the operator accepts it."""
    errs: list[str] = []
    head = spec["headGroupSpec"]
    if not head["template"]["spec"].get("containers"):
        return ["headGroupSpec should have at least one container"]
    head_container = head["template"]["spec"]["containers"][0]
    groups = spec.get("workerGroupSpecs") or []
    resource_params = ("num-cpus", "num-gpus", "memory", "resources")
    for name, group in [("Head", head), *[(g.get("groupName", ""), g) for g in groups]]:
        params = group.get("rayStartParams") or {}
        if any(params.get(k) for k in resource_params) and group.get("resources"):
            errs.append(f"resource fields should not be set in both rayStartParams and Resources for {name} group")
        if "labels" in params:
            errs.append(f"rayStartParams['labels'] is not supported for {name} group")
    on, v2 = autoscaling(spec), autoscaler_v2(spec)
    names: set[str] = set()
    for g in groups:
        name = g.get("groupName", "")
        if name in names:
            errs.append(f"worker group names must be unique ({name})")
        names.add(name)
        if not DNS1123.match(name):  # pod and NetworkPolicy names embed it (validateNetworkPolicy)
            errs.append(f"worker group name {name!r} must be a valid DNS1123 label")
        if not g["template"]["spec"].get("containers"):
            errs.append("workerGroupSpec should have at least one container")
        lo, hi = g.get("minReplicas"), g.get("maxReplicas")
        if not on and (lo is None or hi is None):
            errs.append(f"worker group {name} must set both minReplicas and maxReplicas when autoscaling is disabled")
        if lo is not None and lo < 0:
            errs.append(f"worker group {name} has negative minReplicas {lo}")
        if hi is not None and hi < 0:
            errs.append(f"worker group {name} has negative maxReplicas {hi}")
        if lo is not None and hi is not None and lo > hi:
            errs.append(f"worker group {name} has minReplicas {lo} greater than maxReplicas {hi}")
        replicas = g.get("replicas", 0)  # the CRD's default
        if not (lo or 0) <= replicas <= (hi if hi is not None else 2**31 - 1):
            errs.append(f"worker group {name}: replicas {replicas} outside [minReplicas, maxReplicas] "
                        "(GetWorkerGroupDesiredReplicas would clamp it)")
        idle = g.get("idleTimeoutSeconds")
        if idle is not None:
            if idle < 0:
                errs.append(f"worker group {name}: idleTimeoutSeconds must be non-negative, got {idle}")
            elif not v2 and _env(head_container, V2_ENV) not in ("1", "true"):
                errs.append(f"worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled")
        if g.get("priority") is not None:
            if _version(spec.get("rayVersion", "0")) < (2, 56, 0):
                errs.append(f"worker group {name}: priority is set, but minimum Ray version is 2.56.0")
            elif not v2:
                errs.append(f"worker group {name}: priority is set, but autoscaler v2 is not enabled")
        if g.get("suspend"):
            errs.append(f"worker group {name} can be suspended only when the RayJobDeletionPolicy "
                        "feature gate is enabled")
    env_v2 = _env(head_container, V2_ENV)
    if not on and env_v2 in ("1", "true"):
        errs.append(f"environment variable {V2_ENV} cannot be set to {env_v2!r} when enableInTreeAutoscaling is false")
    if on and (spec.get("autoscalerOptions") or {}).get("version") and env_v2 is not None:
        errs.append(f"both .spec.autoscalerOptions.version and head Pod env var {V2_ENV} are set")
    if on and v2:
        for name, template in [("head Pod", head["template"]), *[(f"worker group {g['groupName']}", g["template"])
                                                                 for g in groups]]:
            if template["spec"].get("restartPolicy", "Never") != "Never":
                errs.append(f"restartPolicy for {name} should be Never or unset when using autoscaler V2")
    idle = (spec.get("autoscalerOptions") or {}).get("idleTimeoutSeconds")
    if idle is not None and idle < 0:
        errs.append(f"autoscalerOptions.idleTimeoutSeconds must be non-negative, got {idle}")
    auth = spec.get("authOptions") or {}
    k8s_auth = auth.get("enableK8sTokenAuth") is True
    if auth.get("mode") == "token":
        if not spec.get("rayVersion"):
            errs.append("authOptions.mode is 'token' but RayVersion was not specified")
        elif _version(spec["rayVersion"]) < (2, 52, 0):
            errs.append(f"authOptions.mode is 'token' but minimum Ray version is 2.52.0, got {spec['rayVersion']}")
        if k8s_auth and _version(spec.get("rayVersion", "0")) < (2, 55, 0):
            errs.append("authOptions.enableK8sTokenAuth is enabled but minimum Ray version is 2.55.0")
        if k8s_auth and auth.get("secretName"):
            errs.append("authOptions.enableK8sTokenAuth is enabled and authOptions.secretName is also set")
    elif k8s_auth:
        errs.append("authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to 'token'")
    errs += [f"spec.{k} requires the {gate} feature gate to be enabled" for k, gate in GATED.items() if k in spec]
    errs += [f"spec.{k}: not checked here (transcribe its rules before using it)" for k in NOT_CHECKED if k in spec]
    return errs


def name_errors(name: str, limit: int) -> list[str]:
    """ValidateRayClusterMetadata / ValidateRayJobMetadata."""
    errs = [] if len(name) <= limit else [f"name should be no more than {limit} characters"]
    return errs + ([] if DNS1035.match(name) else ["name should be a valid DNS1035 label"])


def raycluster_errors(doc: dict) -> list[str]:
    return name_errors(doc["metadata"]["name"], MAX_RAYCLUSTER_NAME) + cluster_spec_errors(doc["spec"])


def rayjob_errors(doc: dict) -> list[str]:
    """ValidateRayJobMetadata + ValidateRayJobSpec (its cluster spec included)."""
    spec = doc["spec"]
    errs = name_errors(doc["metadata"]["name"], MAX_RAYJOB_NAME)
    shutdown, ttl = spec.get("shutdownAfterJobFinishes", False), spec.get("ttlSecondsAfterFinished", 0)
    mode = spec.get("submissionMode", "K8sJobMode")
    if spec.get("suspend") and not shutdown:
        errs.append("a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended")
    if ttl < 0:
        errs.append("TTLSecondsAfterFinished must be a non-negative integer")
    if not shutdown and ttl > 0:
        errs.append("a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished")
    if "deletionStrategy" in spec:
        errs.append("RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy")
    selector = spec.get("clusterSelector") or {}
    if not spec.get("rayClusterSpec") and not selector:
        errs.append("one of RayClusterSpec or ClusterSelector must be set")
    if selector and (spec.get("suspend") or mode == "SidecarMode" or (spec.get("backoffLimit") or 0) > 0):
        errs.append("ClusterSelector mode does not support suspend, SidecarMode or backoffLimit")
    if mode == "InteractiveMode" and (spec.get("backoffLimit") or 0) > 0:
        errs.append("BackoffLimit is incompatible with InteractiveMode")
    if mode == "SidecarMode" and ("submitterPodTemplate" in spec or "submitterConfig" in spec):
        errs.append("SidecarMode doesn't support SubmitterPodTemplate or SubmitterConfig")
    cluster = spec.get("rayClusterSpec")
    if cluster:
        if (cluster.get("authOptions") or {}).get("enableK8sTokenAuth") is True:
            errs.append("K8s token auth mode is currently not supported for RayJob")
        errs += cluster_spec_errors(cluster)
    try:
        yaml.safe_load(spec.get("runtimeEnvYAML", "") or "")
    except yaml.YAMLError as e:
        errs.append(f"runtimeEnvYAML is not valid YAML: {e}")
    for key in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        if spec.get(key) is not None and spec[key] <= 0:
            errs.append(f"{key} must be a positive integer")
    if spec.get("backoffLimit") is not None and spec["backoffLimit"] < 0:
        errs.append("backoffLimit must be a positive integer")
    return errs
