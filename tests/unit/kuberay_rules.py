"""The KubeRay operator's admission rules for a RayCluster spec, in our own Python, from KubeRay v1.7.0
(tag v1.7.0 of ray-project/kuberay, commit 59d663aeec13760646da3db9c1cf8cfe883e30b7).

Source files, all under ``ray-operator/``: ``controllers/ray/utils/validation.go`` (the rules; the
RayCluster controller runs ValidateRayClusterMetadata, ValidateRayClusterSpec and
ValidateRayClusterUpgradeOptions at raycluster_controller.go:165/172/205, and a spec that fails gets
the event ``InvalidRayClusterSpec`` and no pods), ``pkg/features/features.go`` (the default feature
gates, L105-117), ``controllers/ray/utils/util.go`` (IsAutoscalingEnabled L751, IsAutoscalingV2Enabled
L756, IsGCSFaultToleranceEnabled L765, IsAuthEnabled L796, IsK8sAuthEnabled L800, IsTLSEnabled L807)
and ``pkg/webhooks/v1/raycluster_webhook.go`` (unique worker group names, only where the operator runs
with ENABLE_WEBHOOKS=true: main.go:344). Before the operator sees an object the API server fills in
the CRD's defaults (apis/ray/v1/raycluster_types.go L445-485): :func:`with_crd_defaults` does the same.

Each error is ``"<file>:<line>: <the operator's message, minus Go formatting>"``; :data:`RULES` lists
every rule encoded and :data:`UNREACHABLE` the lines that cannot fire with v1.7.0's default gates.
The RayJob rules are in kuberay_rules_job.py, the operator-version floor in kuberay_rules_floor.py.
"""

from __future__ import annotations

import copy
import re

MAX_RAYCLUSTER_NAME = 53  # constant.go:375 (63 - len("-serve-svc"))
INT32_MAX = 2**31 - 1
# features.go:105-117, the defaults of v1.7.0 (and of its Helm chart's values.yaml).
DEFAULT_GATES = {"RayJobDeletionPolicy": True, "RayClusterNetworkPolicy": False, "RayClusterMTLS": False,
                 "RayClusterHistoryServer": False, "GCSFaultToleranceEmbeddedStorage": False}
# constant.go:142-144, 158, 59-60
V2_ENV, REDIS_ADDRESS, REDIS_PASSWORD, REDIS_USERNAME = (
    "RAY_enable_autoscaler_v2", "RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_USERNAME")
GEN_START_CMD = "KUBERAY_GEN_AUTOSCALER_START_CMD"
FT_ANNOTATION, STORAGE_NS_ANNOTATION = "ray.io/ft-enabled", "ray.io/external-storage-namespace"
ORIGIN_LABEL = "ray.io/originated-from-crd"  # constant.go:18; common/job.go:39 sets it to "RayJob"

RULES = {
    "validation.go:33": "RayCluster name at most 53 characters",
    "validation.go:36": "RayCluster name is a DNS-1035 label",
    "validation.go:43": "upgradeStrategy.type is Recreate or None",
    "validation.go:50": "no upgradeStrategy.type on a RayCluster a RayJob or RayService made",
    "validation.go:61": "Ray resources in rayStartParams or in the group's resources, not both (L108, L139)",
    "validation.go:73": "no rayStartParams.labels (L111, L142)",
    "validation.go:81": "group label keys are qualified names",
    "validation.go:88": "group label values are valid label values",
    "validation.go:104": "the head has a container",
    "validation.go:119": "each worker group has a container",
    "validation.go:125": "min and max replicas set when autoscaling is off (the CRD defaults both)",
    "validation.go:128": "minReplicas >= 0",
    "validation.go:131": "maxReplicas >= 0",
    "validation.go:135": "minReplicas <= maxReplicas",
    "validation.go:153": "not both the ray.io/ft-enabled annotation and gcsFaultToleranceOptions",
    "validation.go:159": "no RAY_REDIS_ADDRESS in the head without GCS fault tolerance",
    "validation.go:168": "no redis-password rayStartParam with gcsFaultToleranceOptions",
    "validation.go:173": "no REDIS_PASSWORD head env with gcsFaultToleranceOptions",
    "validation.go:178": "no RAY_REDIS_ADDRESS head env with gcsFaultToleranceOptions",
    "validation.go:183": "no external-storage-namespace annotation with gcsFaultToleranceOptions",
    "validation.go:192": "no redis-username rayStartParam or REDIS_USERNAME head env",
    "validation.go:199": "worker-group suspend needs the RayJobDeletionPolicy gate (on by default)",
    "validation.go:207": "RAY_enable_autoscaler_v2 not 1/true when autoscaling is off",
    "validation.go:216": "no worker-group suspend with autoscaling",
    "validation.go:222": "not both autoscalerOptions.version and RAY_enable_autoscaler_v2",
    "validation.go:227": "head restartPolicy Never or unset with autoscaler v2",
    "validation.go:232": "worker restartPolicy Never or unset with autoscaler v2",
    "validation.go:242": "autoscalerOptions.idleTimeoutSeconds >= 0",
    "validation.go:253": "no KUBERAY_GEN_AUTOSCALER_START_CMD in autoscalerOptions.env",
    "validation.go:261": "historyServerOptions needs the RayClusterHistoryServer gate (off)",
    "validation.go:285": "token auth needs rayVersion",
    "validation.go:290": "token auth needs a parseable rayVersion",
    "validation.go:296": "token auth needs Ray >= 2.52.0",
    "validation.go:302": "Kubernetes token auth needs Ray >= 2.55.0",
    "validation.go:305": "Kubernetes token auth without authOptions.secretName",
    "validation.go:310": "Kubernetes token auth only with mode token",
    "validation.go:316": "networkPolicy needs the RayClusterNetworkPolicy gate (off)",
    "validation.go:323": "tlsOptions needs the RayClusterMTLS gate (off)",
    "validation.go:336": "the rocksdb GCS FT backend needs the GCSFaultToleranceEmbeddedStorage gate (off)",
    "validation.go:370": "no gcsFaultToleranceOptions.storage with the redis backend",
    "validation.go:1012": "worker idleTimeoutSeconds >= 0",
    "validation.go:1026": "worker idleTimeoutSeconds only with autoscaler v2",
    "validation.go:1120": "a non-zero priority needs rayVersion",
    "validation.go:1124": "a non-zero priority needs a parseable rayVersion",
    "validation.go:1128": "a non-zero priority needs Ray >= 2.56.0",
    "validation.go:1141": "a non-zero priority only with autoscaler v2",
    "raycluster_webhook.go:73": "unique worker group names (webhook, ENABLE_WEBHOOKS=true only)",
}
# Lines that cannot fire under DEFAULT_GATES: the gate check before them refuses the field first.
UNREACHABLE = {
    "validation.go:264-281": "history-server collector checks (and L1029-1110), behind L261",
    "validation.go:319, 380-444": "validateNetworkPolicy, behind L316",
    "validation.go:326, 448-524": "validateTLSOptions (IsTLSEnabled is false with the gate off), behind L323",
    "validation.go:339-368": "the rocksdb backend's own rules, behind L336",
}


KNOWN = set(RULES)  # kuberay_rules_job.py adds its own


def err(ref: int | str, message: str) -> str:
    """``"<file>:<line>: message"``; an int is a line of validation.go."""
    ref = f"validation.go:{ref}" if isinstance(ref, int) else ref
    assert ref in KNOWN, f"{ref} is not a listed rule"
    return f"{ref}: {message}"


def parse_generic(text: str) -> tuple[int, ...] | None:
    """k8s.io/apimachinery's version.ParseGeneric: 2+ dot-separated numbers after an optional "v",
    the first without leading zeros, anything after them ignored; None where it errors."""
    m = re.match(r"^\s*v?([0-9]+(?:\.[0-9]+)*)(.*)$", text, re.DOTALL)
    parts = m.group(1).split(".") if m else []
    if len(parts) < 2 or (parts[0] != "0" and parts[0].startswith("0")):
        return None
    return tuple(int(p) for p in parts)


def _less(version: tuple[int, ...], minimum: tuple[int, ...]) -> bool:
    n = max(len(version), len(minimum))
    return version + (0,) * (n - len(version)) < minimum + (0,) * (n - len(minimum))


_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def qualified_name_problems(key: str) -> list[str]:
    """apimachinery validation.IsQualifiedName: [prefix/]name, prefix a DNS-1123 subdomain."""
    parts = key.split("/")
    if len(parts) > 2:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.'"]
    name, out = parts[-1], []
    if len(parts) == 2:
        if not parts[0]:
            out.append("prefix part must be non-empty")
        elif len(parts[0]) > 253 or not DNS1123_SUBDOMAIN.match(parts[0]):
            out.append("prefix part must be a lowercase RFC 1123 subdomain")
    if not name:
        return [*out, "name part must be non-empty"]
    if len(name) > 63:
        out.append("name part must be no more than 63 characters")
    if not _NAME.match(name):
        out.append("name part must start and end with an alphanumeric character")
    return out


def label_value_problems(value: str) -> list[str]:
    """apimachinery validation.IsValidLabelValue: empty, or a name of at most 63 characters."""
    out = ["must be no more than 63 characters"] if len(value) > 63 else []
    if value and not _NAME.match(value):
        out.append("a valid label must start and end with an alphanumeric character")
    return out


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def _containers(template: dict | None) -> list[dict]:
    return ((template or {}).get("spec") or {}).get("containers") or []


def _restart_policy(template: dict | None) -> str:
    return ((template or {}).get("spec") or {}).get("restartPolicy", "")


def with_crd_defaults(spec: dict) -> dict:
    """The spec as the API server stores it: a worker group's replicas 0, minReplicas 0, maxReplicas
    2147483647, numOfHosts 1 and priority 0 where unset (the ``+kubebuilder:default`` markers)."""
    spec = copy.deepcopy(spec)
    for g in spec.get("workerGroupSpecs") or []:
        for key, value in (("replicas", 0), ("minReplicas", 0), ("maxReplicas", INT32_MAX),
                           ("numOfHosts", 1), ("priority", 0)):
            if g.get(key) is None:
                g[key] = value
    return spec


def autoscaling(spec: dict | None) -> bool:
    return bool(spec) and spec.get("enableInTreeAutoscaling") is True


def autoscaler_v2(spec: dict) -> bool:
    return (spec.get("autoscalerOptions") or {}).get("version") == "v2"


def _group(errs: list[str], name: str, group: dict) -> None:
    """validateRayGroupResources (L60-69) and validateRayGroupLabels (L72-100)."""
    params = group.get("rayStartParams") or {}
    if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and group.get("resources"):
        errs.append(err(61, f"resource fields should not be set in both rayStartParams and Resources for "
                            f"{name} group; please use only one"))
    if "labels" in params:
        errs.append(err(73, f"rayStartParams['labels'] is not supported for {name} group; please use the "
                            "top-level Labels field instead"))
    for key, value in (group.get("labels") or {}).items():
        errs += [err(81, f"invalid label key for {name} group: '{key}', error: {p}")
                 for p in qualified_name_problems(key)]
        errs += [err(88, f"invalid label value for key '{key}' in {name} group: '{value}', error: {p}")
                 for p in label_value_problems(str(value))]


def _worker_version_rules(errs: list[str], g: dict, spec: dict, v2_env: bool) -> None:
    """validateWorkerGroupIdleTimeout (L1006-1027) and validateWorkerGroupPriority (L1113-1142)."""
    name, v2 = g.get("groupName", ""), autoscaler_v2(spec) or v2_env
    idle = g.get("idleTimeoutSeconds")
    if idle is not None and idle < 0:
        errs.append(err(1012, f"worker group {name}: idleTimeoutSeconds must be non-negative, got {idle}"))
    elif idle is not None and not v2:
        errs.append(err(1026, f"worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not "
                              "enabled"))
    priority = g.get("priority")
    if not priority:  # nil or 0: L1115
        return
    ray, says = spec.get("rayVersion") or "", f"worker group {name}: priority is set"
    if not ray:
        errs.append(err(1120, f"{says}, but RayVersion was not specified"))
    elif (version := parse_generic(ray)) is None:
        errs.append(err(1124, f"{says}, but RayVersion format is invalid: {ray}"))
    elif _less(version, (2, 56, 0)):
        errs.append(err(1128, f"{says}, but minimum Ray version is 2.56.0, got {ray}"))
    elif not v2:
        errs.append(err(1141, f"{says} to {priority}, but autoscaler v2 is not enabled"))


def cluster_spec_errors(spec: dict, annotations: dict | None = None, gates: dict | None = None,
                        crd_defaults: bool = True) -> list[str]:
    """ValidateRayClusterSpec (validation.go:103-327): [] when the operator accepts the spec. Go stops
    at the first error; this lists every one (accepted or refused is the same either way)."""
    gates = {**DEFAULT_GATES, **(gates or {})}
    if any(gates[g] for g in ("RayClusterNetworkPolicy", "RayClusterMTLS", "RayClusterHistoryServer",
                              "GCSFaultToleranceEmbeddedStorage")):
        raise NotImplementedError("the rules behind an alpha gate (UNREACHABLE) are not transcribed")
    spec = with_crd_defaults(spec) if crd_defaults else spec
    annotations, errs = annotations or {}, []
    head = spec["headGroupSpec"]
    if not _containers(head.get("template")):
        return [err(104, "headGroupSpec should have at least one container")]
    env = _env(_containers(head["template"])[0])
    v2_env = env.get(V2_ENV) in ("1", "true")
    groups = spec.get("workerGroupSpecs") or []
    _group(errs, "Head", head)
    on = autoscaling(spec)
    for g in groups:
        name, lo, hi = g.get("groupName", ""), g.get("minReplicas"), g.get("maxReplicas")
        if not _containers(g.get("template")):
            errs.append(err(119, "workerGroupSpec should have at least one container"))
        if not on and (lo is None or hi is None):
            errs.append(err(125, f"worker group {name} must set both minReplicas and maxReplicas when "
                                 "autoscaling is disabled"))
        if lo is not None and lo < 0:
            errs.append(err(128, f"worker group {name} has negative minReplicas {lo}"))
        if hi is not None and hi < 0:
            errs.append(err(131, f"worker group {name} has negative maxReplicas {hi}"))
        if lo is not None and hi is not None and lo > hi:
            errs.append(err(135, f"worker group {name} has minReplicas {lo} greater than maxReplicas {hi}"))
        _group(errs, name, g)
        _worker_version_rules(errs, g, spec, v2_env)
    errs += _fault_tolerance(spec, head, env, annotations)
    suspended = [g.get("groupName", "") for g in groups if g.get("suspend") is True]
    if not gates["RayJobDeletionPolicy"]:
        errs += [err(199, f"worker group {n} can be suspended only when the RayJobDeletionPolicy feature "
                          "gate is enabled") for n in suspended]
    if not on and v2_env:
        errs.append(err(207, f"environment variable {V2_ENV} cannot be set to '{env[V2_ENV]}' when "
                             "enableInTreeAutoscaling is false"))
    options = spec.get("autoscalerOptions") or {}
    if on:
        errs += [err(216, f"worker group {n} cannot be suspended with Autoscaler enabled") for n in suspended]
        if options.get("version") is not None and V2_ENV in env:
            errs.append(err(222, f"both .spec.autoscalerOptions.version and head Pod env var {V2_ENV} are "
                                 "set"))
        if autoscaler_v2(spec):
            if _restart_policy(head["template"]) not in ("", "Never"):
                errs.append(err(227, "restartPolicy for head Pod should be Never or unset when using "
                                     "autoscaler V2"))
            errs += [err(232, f"restartPolicy for worker group {g.get('groupName', '')} should be Never or "
                              "unset when using autoscaler V2")
                     for g in groups if _restart_policy(g.get("template")) not in ("", "Never")]
    if (idle := options.get("idleTimeoutSeconds")) is not None and idle < 0:
        errs.append(err(242, f"autoscalerOptions.idleTimeoutSeconds must be non-negative, got {idle}"))
    if any(e.get("name") == GEN_START_CMD for e in options.get("env") or []):
        errs.append(err(253, f"autoscalerOptions.env must not contain {GEN_START_CMD}"))
    if spec.get("historyServerOptions") is not None:
        errs.append(err(261, "RayClusterHistoryServer feature gate is not enabled"))
    errs += _auth(spec)
    if spec.get("networkPolicy") is not None:
        errs.append(err(316, "spec.networkPolicy requires the RayClusterNetworkPolicy feature gate"))
    if spec.get("tlsOptions") is not None:
        errs.append(err(323, "spec.tlsOptions requires the RayClusterMTLS feature gate to be enabled"))
    return errs


def _fault_tolerance(spec: dict, head: dict, env: dict[str, str], annotations: dict) -> list[str]:
    """validation.go:153-195 and validateGcsFaultToleranceBackend (L333-375)."""
    options, params, errs = spec.get("gcsFaultToleranceOptions"), head.get("rayStartParams") or {}, []
    if annotations.get(FT_ANNOTATION) and options is not None:
        errs.append(err(153, f"{FT_ANNOTATION} annotation and GcsFaultToleranceOptions are both set"))
    ft = str(annotations.get(FT_ANNOTATION, "")).lower() == "true" or options is not None  # util.go:765
    if not ft and REDIS_ADDRESS in env:
        errs.append(err(159, f"{REDIS_ADDRESS} is set which implicitly enables GCS fault tolerance, but "
                             "GcsFaultToleranceOptions is not set"))
    if options is not None:
        for line, bad, what in ((168, params.get("redis-password"), "`redis-password` in rayStartParams"),
                                (173, REDIS_PASSWORD in env, "`REDIS_PASSWORD` env var in head Pod"),
                                (178, REDIS_ADDRESS in env, "`RAY_REDIS_ADDRESS` env var in head Pod"),
                                (183, annotations.get(STORAGE_NS_ANNOTATION),
                                 f"`{STORAGE_NS_ANNOTATION}` annotation")):
            if bad:
                errs.append(err(line, f"cannot set {what} when GcsFaultToleranceOptions is enabled"))
        if (options.get("backend") or "redis") == "rocksdb":
            errs.append(err(336, "the embedded RocksDB GCS fault tolerance backend requires the "
                                 "GCSFaultToleranceEmbeddedStorage feature gate to be enabled"))
        elif options.get("storage") is not None:
            errs.append(err(370, "cannot set GcsFaultToleranceOptions.Storage when backend is 'redis'"))
    if params.get("redis-username") or REDIS_USERNAME in env:
        errs.append(err(192, "cannot set redis username in rayStartParams or environment variables"))
    return errs


def _auth(spec: dict) -> list[str]:
    """validation.go:284-313."""
    auth = spec.get("authOptions") or {}
    k8s = auth.get("enableK8sTokenAuth") is True
    if auth.get("mode") != "token":
        return [err(310, "authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to "
                         "'token'")] if k8s else []
    ray, says = spec.get("rayVersion") or "", "authOptions.mode is 'token' but"
    if not ray:
        return [err(285, f"{says} RayVersion was not specified")]
    version = parse_generic(ray)
    if version is None:
        return [err(290, f"{says} RayVersion format is invalid: {ray}")]
    if _less(version, (2, 52, 0)):
        return [err(296, f"{says} minimum Ray version is 2.52.0, got {ray}")]
    if k8s and _less(version, (2, 55, 0)):
        return [err(302, f"authOptions.enableK8sTokenAuth is enabled but minimum Ray version is 2.55.0, "
                         f"got {ray}")]
    if k8s and auth.get("secretName"):
        return [err(305, "authOptions.enableK8sTokenAuth is enabled and authOptions.secretName is also set")]
    return []


def metadata_errors(name: str, limit: int, kind: str, first_line: int) -> list[str]:
    """ValidateRayClusterMetadata (L32-40) / ValidateRayJobMetadata (L533-541)."""
    if len(name) > limit:
        return [err(first_line, f"{kind} name should be no more than {limit} characters")]
    if len(name) > 63 or not DNS1035.match(name):
        return [err(first_line + 3, f"{kind} name should be a valid DNS1035 label")]
    return []


def upgrade_errors(spec: dict, labels: dict | None) -> list[str]:
    """ValidateRayClusterUpgradeOptions (L42-57)."""
    kind = (spec.get("upgradeStrategy") or {}).get("type")
    if kind is None:
        return []
    if kind not in ("Recreate", "None"):
        return [err(43, f"Spec.UpgradeStrategy.Type value {kind} is invalid, valid options are Recreate "
                        "or None")]
    creator = (labels or {}).get(ORIGIN_LABEL)
    if creator in ("RayJob", "RayService"):  # GetCRDType (util.go:62): anything else is RayCluster
        return [err(50, f"upgradeStrategy cannot be set when RayCluster is created by {creator}")]
    return []


def webhook_errors(spec: dict) -> list[str]:
    """raycluster_webhook.go:69-79 (validateWorkerGroups)."""
    names = [g.get("groupName", "") for g in spec.get("workerGroupSpecs") or []]
    if len(set(names)) < len(names):
        return [err("raycluster_webhook.go:73", "worker group names must be unique")]
    return []


def raycluster_errors(doc: dict, gates: dict | None = None) -> list[str]:
    """Everything the operator (and its optional webhook) checks on a RayCluster before making pods."""
    meta = doc["metadata"]
    return (metadata_errors(meta["name"], MAX_RAYCLUSTER_NAME, "RayCluster", 33)
            + cluster_spec_errors(doc["spec"], meta.get("annotations"), gates)
            + upgrade_errors(doc["spec"], meta.get("labels")) + webhook_errors(doc["spec"]))
