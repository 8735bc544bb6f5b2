"""The oldest KubeRay operator that knows every field a manifest sets. An operator installs its own
CRDs, and the API server prunes (drops without a word) a field its CRD does not define: a RayCluster
with ``authOptions`` applied where the CRDs predate it runs with no token, and its dashboard, on
0.0.0.0, serves the job API to anyone who reaches the head service.

FIRST_RELEASE is the first ray-project/kuberay release tag whose v1 CRD
(``ray-operator/config/crd/bases/ray.io_rayclusters.yaml`` / ``ray.io_rayjobs.yaml``) defines the
field, read from every v1.x.y release tag (v1.0.0 to v1.7.0); a field missing from it is in every v1
CRD since v1.0.0. Paths: RayCluster spec keys, ``headGroupSpec.*``, ``workerGroupSpecs[].*``,
``autoscalerOptions.*`` and ``authOptions.*``; a RayJob's own spec keys as ``job.*``, its
``rayClusterSpec`` as a RayCluster's spec.
"""

from __future__ import annotations

FIRST_RELEASE = {
    "job.activeDeadlineSeconds": "1.1.0", "job.submissionMode": "1.1.0", "suspend": "1.1.0",
    "workerGroupSpecs[].numOfHosts": "1.1.0",
    "job.backoffLimit": "1.2.0", "job.submitterConfig": "1.2.0",
    "gcsFaultToleranceOptions": "1.3.0", "job.managedBy": "1.3.0", "managedBy": "1.3.0",
    "workerGroupSpecs[].idleTimeoutSeconds": "1.3.0", "workerGroupSpecs[].suspend": "1.3.0",
    "autoscalerOptions.version": "1.4.0",
    "headGroupSpec.labels": "1.5.0", "headGroupSpec.resources": "1.5.0", "job.deletionStrategy": "1.5.0",
    "workerGroupSpecs[].labels": "1.5.0", "workerGroupSpecs[].resources": "1.5.0",
    "authOptions": "1.5.1", "authOptions.mode": "1.5.1",
    "authOptions.enableK8sTokenAuth": "1.6.0", "authOptions.secretName": "1.6.0",
    "job.preRunningDeadlineSeconds": "1.6.0", "upgradeStrategy": "1.6.0",
    "autoscalerOptions.args": "1.7.0", "autoscalerOptions.command": "1.7.0",
    "headGroupSpec.ingressOptions": "1.7.0", "historyServerOptions": "1.7.0", "networkPolicy": "1.7.0",
    "tlsOptions": "1.7.0", "workerGroupSpecs[].priority": "1.7.0",
}


def _cluster_fields(spec: dict) -> set[str]:
    out = set(spec)
    out |= {f"headGroupSpec.{k}" for k in spec.get("headGroupSpec") or {}}
    out |= {f"workerGroupSpecs[].{k}" for g in spec.get("workerGroupSpecs") or [] for k in g}
    for sub in ("autoscalerOptions", "authOptions"):
        out |= {f"{sub}.{k}" for k in spec.get(sub) or {}}
    return out


def used_fields(doc: dict) -> set[str]:
    """The field paths (in FIRST_RELEASE's naming) that a RayCluster or RayJob manifest sets."""
    if doc["kind"] == "RayCluster":
        return _cluster_fields(doc["spec"])
    return {f"job.{k}" for k in doc["spec"]} | _cluster_fields(doc["spec"].get("rayClusterSpec") or {})


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def required_operator(doc: dict) -> str:
    """The oldest KubeRay release whose CRDs keep every field the manifest sets."""
    return max((FIRST_RELEASE.get(f, "1.0.0") for f in used_fields(doc)), key=_key)
