"""The KubeRay operator's admission rules for a RayJob, in our own Python, from KubeRay v1.7.0 (tag
v1.7.0 of ray-project/kuberay, commit 59d663aeec13760646da3db9c1cf8cfe883e30b7):
``ray-operator/controllers/ray/utils/validation.go`` ValidateRayJobMetadata (L533-541), ValidateRayJobSpec
(L543-630) with validateDeletionConfiguration (L752-792), validateDeletionRules (L797-868),
validateDeletionCondition (L871-888), validateTTLConsistency (L892-925) and
validateLegacyDeletionPolicies (L928-966). The RayJob controller runs the first two at
rayjob_controller.go:470-471 (a RayJob that fails gets ``InvalidRayJobSpec`` and no cluster). The
RayCluster it then makes carries ``ray.io/originated-from-crd: RayJob`` (common/job.go:39), which
ValidateRayClusterUpgradeOptions (L50) reads. CRD defaults (ray.io_rayjobs.yaml): submissionMode
K8sJobMode, backoffLimit 0, ttlSecondsAfterFinished 0.
"""

from __future__ import annotations

import yaml
from kuberay_rules import (DEFAULT_GATES, KNOWN, ORIGIN_LABEL, _restart_policy, autoscaling,
                           cluster_spec_errors, err, metadata_errors, upgrade_errors, with_crd_defaults)

MAX_RAYJOB_NAME = 53 - 6  # constant.go:381: the cluster's name gets a "-xxxxx" suffix
CLUSTER_KEY = "ray.io/cluster"  # constant.go:85 (RayJobClusterSelectorKey)
# DeleteWorkers <= DeleteCluster <= DeleteSelf in TTL (validateTTLConsistency, L894-898).
DELETION_ORDER = ("DeleteWorkers", "DeleteCluster", "DeleteSelf")

JOB_RULES = {
    "validation.go:534": "RayJob name at most 47 characters",
    "validation.go:537": "RayJob name is a DNS-1035 label",
    "validation.go:547": "suspend only with shutdownAfterJobFinishes",
    "validation.go:551": "ttlSecondsAfterFinished >= 0",
    "validation.go:753": "ttlSecondsAfterFinished > 0 only with shutdownAfterJobFinishes",
    "validation.go:763": "deletionStrategy needs the RayJobDeletionPolicy gate (on by default)",
    "validation.go:771": "deletionRules not with shutdownAfterJobFinishes",
    "validation.go:774": "deletionRules not with onSuccess/onFailure",
    "validation.go:788": "deletionStrategy has both onSuccess and onFailure, or deletionRules",
    "validation.go:933": "legacy: both onSuccess and onFailure",
    "validation.go:941": "legacy: onSuccess.policy set",
    "validation.go:944": "legacy: onFailure.policy set",
    "validation.go:949": "legacy: no DeleteCluster/DeleteWorkers on success with clusterSelector",
    "validation.go:952": "legacy: no DeleteCluster/DeleteWorkers on failure with clusterSelector",
    "validation.go:958": "legacy: no DeleteWorkers with autoscaling",
    "validation.go:962": "legacy: no DeleteNone with shutdownAfterJobFinishes",
    "validation.go:876": "rule: not both jobStatus and jobDeploymentStatus",
    "validation.go:879": "rule: jobStatus or jobDeploymentStatus",
    "validation.go:884": "rule: ttlSeconds >= 0",
    "validation.go:816": "rule: no DeleteCluster/DeleteWorkers with clusterSelector",
    "validation.go:821": "rule: no DeleteWorkers with autoscaling",
    "validation.go:833": "rule: one per (jobStatus, policy)",
    "validation.go:845": "rule: one per (jobDeploymentStatus, policy)",
    "validation.go:913": "rule TTLs: DeleteWorkers <= DeleteCluster <= DeleteSelf",
    "validation.go:562": "no suspend with clusterSelector",
    "validation.go:565": "rayClusterSpec or clusterSelector",
    "validation.go:570": "clusterSelector names a cluster (ray.io/cluster)",
    "validation.go:573": "no clusterSelector in SidecarMode",
    "validation.go:576": "no backoffLimit > 0 with clusterSelector",
    "validation.go:588": "no backoffLimit > 0 in InteractiveMode",
    "validation.go:593": "SidecarMode: no submitterPodTemplate",
    "validation.go:597": "SidecarMode: no submitterConfig",
    "validation.go:601": "SidecarMode: head restartPolicy Never or unset",
    "validation.go:607": "no Kubernetes token auth for a RayJob",
    "validation.go:609": "rayClusterSpec passes ValidateRayClusterSpec (with the RayJob's annotations)",
    "validation.go:616": "runtimeEnvYAML decodes to a map",
    "validation.go:620": "activeDeadlineSeconds > 0",
    "validation.go:623": "preRunningDeadlineSeconds > 0",
    "validation.go:626": "backoffLimit >= 0",
}
KNOWN.update(JOB_RULES)


def _legacy(spec: dict, strategy: dict) -> list[str]:
    """validateLegacyDeletionPolicies (L928-966)."""
    on_success, on_failure = strategy.get("onSuccess"), strategy.get("onFailure")
    if on_success is None or on_failure is None:
        return [err(933, "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set")]
    success, failure = on_success.get("policy"), on_failure.get("policy")
    if success is None:
        return [err(941, "the DeletionPolicyType field of DeletionStrategy.OnSuccess cannot be unset")]
    if failure is None:
        return [err(944, "the DeletionPolicyType field of DeletionStrategy.OnFailure cannot be unset")]
    if spec.get("clusterSelector"):
        if success in ("DeleteCluster", "DeleteWorkers"):
            return [err(949, f"the ClusterSelector mode doesn't support DeletionStrategy={success} on "
                             "success")]
        if failure in ("DeleteCluster", "DeleteWorkers"):
            return [err(952, f"the ClusterSelector mode doesn't support DeletionStrategy={failure} on "
                             "failure")]
    if "DeleteWorkers" in (success, failure) and autoscaling(spec.get("rayClusterSpec")):
        return [err(958, "DeletionStrategy=DeleteWorkers currently does not support RayCluster with "
                         "autoscaling enabled")]
    if spec.get("shutdownAfterJobFinishes") and "DeleteNone" in (success, failure):
        return [err(962, "shutdownAfterJobFinshes is set to 'true' while deletion policy is 'DeleteNone'")]
    return []


def _rules(spec: dict, rules: list[dict]) -> list[str]:
    """validateDeletionRules (L797-868): every problem is collected (errors.Join)."""
    errs: list[str] = []
    seen: dict[tuple[str, str], dict[str, int]] = {}
    for i, rule in enumerate(rules):
        cond, policy = rule.get("condition") or {}, rule.get("policy")
        status, deployment = cond.get("jobStatus"), cond.get("jobDeploymentStatus")
        ttl = cond.get("ttlSeconds", 0)
        if status is not None and deployment is not None:
            errs.append(err(876, f"deletionRules[{i}]: cannot set both JobStatus and JobDeploymentStatus "
                                 "at the same time"))
            continue
        if status is None and deployment is None:
            errs.append(err(879, f"deletionRules[{i}]: exactly one of JobStatus and JobDeploymentStatus "
                                 "must be set"))
            continue
        if ttl < 0:
            errs.append(err(884, f"deletionRules[{i}]: TTLSeconds must be non-negative"))
            continue
        if spec.get("clusterSelector") and policy in ("DeleteCluster", "DeleteWorkers"):
            errs.append(err(816, f"deletionRules[{i}]: DeletionPolicyType '{policy}' not supported when "
                                 "ClusterSelector is set"))
            continue
        if autoscaling(spec.get("rayClusterSpec")) and policy == "DeleteWorkers":
            errs.append(err(821, f"deletionRules[{i}]: DeletionPolicyType 'DeleteWorkers' not supported "
                                 "with autoscaling enabled"))
            continue
        kind, value = ("JobStatus", status) if status is not None else ("JobDeploymentStatus", deployment)
        group = seen.setdefault((kind, value), {})
        if policy in group:
            line = 833 if kind == "JobStatus" else 845
            errs.append(err(line, f"deletionRules[{i}]: duplicate rule for DeletionPolicyType '{policy}' and "
                                  f"{kind} '{value}'"))
            continue
        group[policy] = ttl
    for (kind, value), ttls in seen.items():
        ordered = [(p, ttls[p]) for p in DELETION_ORDER if p in ttls]
        errs += [err(913, f"for {kind} '{value}': {p} TTL ({t}) must be >= {q} TTL ({s})")
                 for (q, s), (p, t) in zip(ordered, ordered[1:]) if t < s]
    return errs


def _deletion(spec: dict, gates: dict) -> list[str]:
    """validateDeletionConfiguration (L752-792)."""
    if not spec.get("shutdownAfterJobFinishes") and spec.get("ttlSecondsAfterFinished", 0) > 0:
        return [err(753, "a RayJob with shutdownAfterJobFinishes set to false cannot have "
                         "TTLSecondsAfterFinished")]
    strategy = spec.get("deletionStrategy")
    if strategy is None:
        return []
    if not gates["RayJobDeletionPolicy"]:
        return [err(763, "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy")]
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = strategy.get("deletionRules") or []
    if rules and spec.get("shutdownAfterJobFinishes"):
        return [err(771, "spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are "
                         "mutually exclusive")]
    if rules and legacy:
        return [err(774, "Cannot use both legacy onSuccess/onFailure fields and deletionRules "
                         "simultaneously")]
    if legacy:
        return _legacy(spec, strategy)
    if rules:
        return _rules(spec, rules)
    return [err(788, "DeletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules "
                     "field")]


def runtime_env_problem(text: str) -> str | None:
    """dashboardclient.UnmarshalRuntimeEnvYAML (dashboard_httpclient.go:382-388): YAML into a
    map[string]any; empty or null is a nil map, a list or scalar cannot be unmarshalled."""
    try:
        value = yaml.safe_load(text or "")
    except yaml.YAMLError as e:
        return f"failed to unmarshal RuntimeEnvYAML: {e}"
    return None if value is None or isinstance(value, dict) else (
        f"failed to unmarshal RuntimeEnvYAML: a {type(value).__name__} is not a map")


def rayjob_spec_errors(spec: dict, annotations: dict | None = None, gates: dict | None = None) -> list[str]:
    """ValidateRayJobSpec (L543-630), on the spec as the API server stores it (CRD defaults filled)."""
    gates = {**DEFAULT_GATES, **(gates or {})}
    spec = {"submissionMode": "K8sJobMode", "backoffLimit": 0, "ttlSecondsAfterFinished": 0,
            **{k: v for k, v in spec.items() if v is not None}}
    if spec.get("rayClusterSpec"):
        spec["rayClusterSpec"] = with_crd_defaults(spec["rayClusterSpec"])
    mode, backoff, selector = spec["submissionMode"], spec["backoffLimit"], spec.get("clusterSelector") or {}
    errs: list[str] = []
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        errs.append(err(547, "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be "
                             "suspended"))
    if spec["ttlSecondsAfterFinished"] < 0:
        errs.append(err(551, "TTLSecondsAfterFinished must be a non-negative integer"))
    errs += _deletion(spec, gates)
    if spec.get("suspend") and selector:
        errs.append(err(562, "the ClusterSelector mode doesn't support the suspend operation"))
    cluster = spec.get("rayClusterSpec")
    if cluster is None and not selector:
        errs.append(err(565, "one of RayClusterSpec or ClusterSelector must be set"))
    if selector:
        if not selector.get(CLUSTER_KEY):
            errs.append(err(570, "cluster name in ClusterSelector should not be empty"))
        if mode == "SidecarMode":
            errs.append(err(573, "ClusterSelector is not supported in SidecarMode"))
        if backoff > 0:
            errs.append(err(576, "BackoffLimit is incompatible with ClusterSelector mode"))
    if mode == "InteractiveMode" and backoff > 0:
        errs.append(err(588, "BackoffLimit is incompatible with InteractiveMode"))
    if mode == "SidecarMode":
        if spec.get("submitterPodTemplate") is not None:
            errs.append(err(593, "Currently, SidecarMode doesn't support SubmitterPodTemplate"))
        if spec.get("submitterConfig") is not None:
            errs.append(err(597, "Currently, SidecarMode doesn't support SubmitterConfig"))
        if cluster and _restart_policy(cluster["headGroupSpec"].get("template")) not in ("", "Never"):
            errs.append(err(601, "restartPolicy for head Pod should be Never or unset when using "
                                 "SidecarMode"))
    if cluster is not None:
        if (cluster.get("authOptions") or {}).get("enableK8sTokenAuth") is True:
            errs.append(err(607, "K8s token auth mode is currently not supported for RayJob"))
        errs += [err(609, e) for e in cluster_spec_errors(cluster, annotations, gates, crd_defaults=False)]
    if (problem := runtime_env_problem(spec.get("runtimeEnvYAML", ""))) is not None:
        errs.append(err(616, problem))
    for line, key in ((620, "activeDeadlineSeconds"), (623, "preRunningDeadlineSeconds")):
        if spec.get(key) is not None and spec[key] <= 0:
            errs.append(err(line, f"{key} must be a positive integer"))
    if backoff < 0:
        errs.append(err(626, "backoffLimit must be a positive integer"))
    return errs


def rayjob_errors(doc: dict, gates: dict | None = None) -> list[str]:
    """Everything the operator checks on a RayJob, and on the RayCluster it then creates."""
    meta, spec = doc["metadata"], doc["spec"]
    errs = metadata_errors(meta["name"], MAX_RAYJOB_NAME, "RayJob", 534)
    errs += rayjob_spec_errors(spec, meta.get("annotations"), gates)
    if spec.get("rayClusterSpec"):
        errs += upgrade_errors(spec["rayClusterSpec"], {ORIGIN_LABEL: "RayJob"})
    return errs
