"""KubeRay v1.7.0's admission rules (kuberay_rules.py, kuberay_rules_job.py; tag v1.7.0 of
ray-project/kuberay, commit 59d663aeec13760646da3db9c1cf8cfe883e30b7) and the operator-version floor
(kuberay_rules_floor.py), against deploy/kuberay/*.yaml.

The rules encoded, one case each below: a manifest edited to break the rule is refused with that
rule's source line, and the shipped manifests pass every rule. Lines of
``ray-operator/controllers/ray/utils/validation.go`` unless named otherwise:

RayCluster (ValidateRayClusterMetadata L32-40, ValidateRayClusterUpgradeOptions L42-57,
ValidateRayClusterSpec L103-327, validateWorkerGroupIdleTimeout L1006-1027,
validateWorkerGroupPriority L1113-1142, raycluster_webhook.go validateWorkerGroups L69-79):
33 name length, 36 name DNS-1035, 43 upgrade type, 50 upgrade on a RayJob's cluster, 61 resources in
two places, 73 rayStartParams labels, 81 label key syntax, 88 label value syntax, 104 head container,
119 worker container, 125 min/max without autoscaling, 128/131 negative replicas, 135 min > max, 153
ft-enabled annotation with gcsFaultToleranceOptions, 159 RAY_REDIS_ADDRESS without GCS FT, 168/173/178/
183 Redis settings beside gcsFaultToleranceOptions, 192 REDIS_USERNAME / redis-username, 199 suspend
without the RayJobDeletionPolicy gate, 207 autoscaler-v2 env without autoscaling, 216 suspend with
autoscaling, 222 both v2 switches, 227/232 restartPolicy with v2, 242 autoscaler idle timeout, 253
KUBERAY_GEN_AUTOSCALER_START_CMD in autoscalerOptions.env, 261 history server gate, 285/290/296/302/
305/310 auth, 316 network policy gate, 323 TLS gate, 336 rocksdb gate, 370 storage with redis, 1012/
1026 worker idle timeout, 1120/1124/1128/1141 worker priority, raycluster_webhook.go:73 unique names.

RayJob (ValidateRayJobMetadata L533-541, ValidateRayJobSpec L543-630, deletion L752-966): 534/537
name, 547 suspend, 551 TTL, 753 TTL without shutdown, 763 deletion gate, 771/774/788 deletion modes,
933/941/944/949/952/958/962 legacy policies, 876/879/884/816/821/833/845/913 deletion rules,
562/565/570/573/576 cluster selector, 588 InteractiveMode, 593/597/601 SidecarMode, 607 Kubernetes
auth, 609 the cluster spec, 616 runtimeEnvYAML is a map, 620/623/626 deadlines and backoff.

Not reachable with v1.7.0's default feature gates (features.go:105-117), listed in
kuberay_rules.UNREACHABLE: validation.go:264-281 and 1029-1110 (history server), 319 and 380-444
(network policy), 326 and 448-524 (TLS), 339-368 (rocksdb backend).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from kuberay_rules import KNOWN, UNREACHABLE, cluster_spec_errors, parse_generic, raycluster_errors
from kuberay_rules_floor import FIRST_RELEASE, required_operator, used_fields
from kuberay_rules_job import rayjob_errors

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "deploy" / "kuberay"
FT = {"redisAddress": "redis:6379"}


def _manifest(name: str) -> dict:
    (doc,) = [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]
    return doc


def _rc(edit, gates=None) -> list[str]:
    doc = _manifest("raycluster.yaml")
    s = doc["spec"]
    edit(doc, s, s["headGroupSpec"], s["workerGroupSpecs"][0])
    return raycluster_errors(doc, gates)


def _job(edit, gates=None) -> list[str]:
    doc = _manifest("rayjob.yaml")
    s = doc["spec"]
    edit(doc, s, s["rayClusterSpec"], s["rayClusterSpec"]["workerGroupSpecs"][0])
    return rayjob_errors(doc, gates)


def env(container_of: dict, name: str, value: str = "x") -> None:
    container = container_of["template"]["spec"]["containers"][0]
    container.setdefault("env", []).append({"name": name, "value": value})


def put(d: dict, **kv) -> None:
    d.update(kv)


def no_v2(s: dict) -> None:
    s.pop("autoscalerOptions")


def off(s: dict, g: dict) -> None:  # autoscaling off: the v2-only worker fields go too
    s.update(enableInTreeAutoscaling=False)
    s.pop("autoscalerOptions")
    g.pop("idleTimeoutSeconds")


def selector(s: dict, name: str = "remax-ray") -> None:
    s.pop("rayClusterSpec")
    s.pop("backoffLimit", None)  # a retry makes a new cluster, so an existing one's job has none (L576)
    s["clusterSelector"] = {"ray.io/cluster": name} if name else {"team": "a"}


def rules(s: dict, *items) -> None:
    s.update(shutdownAfterJobFinishes=False)
    s["deletionStrategy"] = {"deletionRules": [{"policy": p, "condition": c} for p, c in items]}


def legacy(s: dict, success, failure) -> None:
    s["deletionStrategy"] = {"onSuccess": {"policy": success} if success else {},
                             "onFailure": {"policy": failure} if failure else {}}


OK = {"jobStatus": "SUCCEEDED"}
NO_DELETION_GATE = {"RayJobDeletionPolicy": False}
CLUSTER = [  # (validation.go line or "file:line", edit(doc, spec, head, first worker group)[, gates])
    (33, lambda d, s, h, g: d["metadata"].update(name="x" * 54)),
    (36, lambda d, s, h, g: d["metadata"].update(name="Remax")),
    (43, lambda d, s, h, g: put(s, upgradeStrategy={"type": "RollingUpdate"})),
    (61, lambda d, s, h, g: put(g, resources={"CPU": "4"}, rayStartParams={"num-cpus": "4"})),
    (73, lambda d, s, h, g: g["rayStartParams"].update(labels="zone=a")),
    (81, lambda d, s, h, g: put(g, labels={"-bad.io/zone": "a"})),
    (88, lambda d, s, h, g: put(h, labels={"zone": "us west"})),
    (104, lambda d, s, h, g: h["template"]["spec"].update(containers=[])),
    (119, lambda d, s, h, g: g["template"]["spec"].update(containers=[])),
    (128, lambda d, s, h, g: put(g, minReplicas=-1)),
    (131, lambda d, s, h, g: put(g, maxReplicas=-1)),
    (135, lambda d, s, h, g: put(g, minReplicas=3)),
    (153, lambda d, s, h, g: (d["metadata"].update(annotations={"ray.io/ft-enabled": "true"}),
                              put(s, gcsFaultToleranceOptions=FT))),
    (159, lambda d, s, h, g: env(h, "RAY_REDIS_ADDRESS")),
    (168, lambda d, s, h, g: (put(s, gcsFaultToleranceOptions=FT),
                              h["rayStartParams"].update({"redis-password": "p"}))),
    (173, lambda d, s, h, g: (put(s, gcsFaultToleranceOptions=FT), env(h, "REDIS_PASSWORD"))),
    (178, lambda d, s, h, g: (put(s, gcsFaultToleranceOptions=FT), env(h, "RAY_REDIS_ADDRESS"))),
    (183, lambda d, s, h, g: (put(s, gcsFaultToleranceOptions=FT), d["metadata"].update(
        annotations={"ray.io/external-storage-namespace": "ns"}))),
    (192, lambda d, s, h, g: env(h, "REDIS_USERNAME")),
    (199, lambda d, s, h, g: (off(s, g), put(g, suspend=True)), NO_DELETION_GATE),
    (207, lambda d, s, h, g: (off(s, g), env(h, "RAY_enable_autoscaler_v2", "true"))),
    (216, lambda d, s, h, g: put(g, suspend=True)),
    (222, lambda d, s, h, g: env(h, "RAY_enable_autoscaler_v2", "1")),
    (227, lambda d, s, h, g: h["template"]["spec"].update(restartPolicy="Always")),
    (232, lambda d, s, h, g: g["template"]["spec"].update(restartPolicy="OnFailure")),
    (242, lambda d, s, h, g: s["autoscalerOptions"].update(idleTimeoutSeconds=-1)),
    (253, lambda d, s, h, g: s["autoscalerOptions"].update(
        env=[{"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": "ray kuberay-autoscaler"}])),
    (261, lambda d, s, h, g: put(s, historyServerOptions={})),
    (285, lambda d, s, h, g: s.pop("rayVersion")),
    (290, lambda d, s, h, g: put(s, rayVersion="latest")),
    (296, lambda d, s, h, g: put(s, rayVersion="2.50.0")),
    (302, lambda d, s, h, g: (put(s, rayVersion="2.54.0"), s["authOptions"].update(enableK8sTokenAuth=True))),
    (305, lambda d, s, h, g: s["authOptions"].update(enableK8sTokenAuth=True, secretName="mine")),
    (310, lambda d, s, h, g: put(s, authOptions={"enableK8sTokenAuth": True})),
    (316, lambda d, s, h, g: put(s, networkPolicy={})),
    (323, lambda d, s, h, g: put(s, tlsOptions={"enabled": True})),
    (336, lambda d, s, h, g: put(s, gcsFaultToleranceOptions={"backend": "rocksdb"})),
    (370, lambda d, s, h, g: put(s, gcsFaultToleranceOptions={**FT, "storage": {"size": "1Gi"}})),
    (1012, lambda d, s, h, g: put(g, idleTimeoutSeconds=-1)),
    (1026, lambda d, s, h, g: no_v2(s)),
    (1120, lambda d, s, h, g: (put(g, priority=1), s.pop("rayVersion"))),
    (1124, lambda d, s, h, g: (put(g, priority=1), put(s, rayVersion="v"))),
    (1128, lambda d, s, h, g: (put(g, priority=1), put(s, rayVersion="2.55.0"))),
    (1141, lambda d, s, h, g: (put(g, priority=1), no_v2(s), g.pop("idleTimeoutSeconds"))),
    ("raycluster_webhook.go:73", lambda d, s, h, g: s["workerGroupSpecs"].append(dict(g))),
]
JOB = [  # (validation.go line, edit(doc, job spec, its cluster spec, its first worker group)[, gates])
    (50, lambda d, s, c, g: put(c, upgradeStrategy={"type": "Recreate"})),
    (534, lambda d, s, c, g: d["metadata"].update(name="x" * 48)),
    (537, lambda d, s, c, g: d["metadata"].update(name="9-remax")),
    (547, lambda d, s, c, g: put(s, suspend=True, shutdownAfterJobFinishes=False)),
    (551, lambda d, s, c, g: put(s, ttlSecondsAfterFinished=-1)),
    (753, lambda d, s, c, g: put(s, shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=600)),
    (763, lambda d, s, c, g: legacy(s, "DeleteCluster", "DeleteCluster"), NO_DELETION_GATE),
    (771, lambda d, s, c, g: (rules(s, ("DeleteCluster", OK)), put(s, shutdownAfterJobFinishes=True))),
    (774, lambda d, s, c, g: (rules(s, ("DeleteCluster", OK)), s["deletionStrategy"].update(
        onSuccess={"policy": "DeleteCluster"}))),
    (788, lambda d, s, c, g: put(s, deletionStrategy={})),
    (933, lambda d, s, c, g: put(s, deletionStrategy={"onSuccess": {"policy": "DeleteCluster"}})),
    (941, lambda d, s, c, g: legacy(s, None, "DeleteCluster")),
    (944, lambda d, s, c, g: legacy(s, "DeleteCluster", None)),
    (949, lambda d, s, c, g: (selector(s), legacy(s, "DeleteCluster", "DeleteSelf"))),
    (952, lambda d, s, c, g: (selector(s), legacy(s, "DeleteSelf", "DeleteWorkers"))),
    (958, lambda d, s, c, g: (put(c, enableInTreeAutoscaling=True),
                              legacy(s, "DeleteWorkers", "DeleteCluster"))),
    (962, lambda d, s, c, g: legacy(s, "DeleteCluster", "DeleteNone")),
    (876, lambda d, s, c, g: rules(s, ("DeleteCluster", {**OK, "jobDeploymentStatus": "Failed"}))),
    (879, lambda d, s, c, g: rules(s, ("DeleteCluster", {"ttlSeconds": 10}))),
    (884, lambda d, s, c, g: rules(s, ("DeleteCluster", {**OK, "ttlSeconds": -1}))),
    (816, lambda d, s, c, g: (selector(s), rules(s, ("DeleteCluster", OK)))),
    (821, lambda d, s, c, g: (put(c, enableInTreeAutoscaling=True), rules(s, ("DeleteWorkers", OK)))),
    (833, lambda d, s, c, g: rules(s, ("DeleteCluster", OK), ("DeleteCluster", {**OK, "ttlSeconds": 5}))),
    (845, lambda d, s, c, g: rules(s, *[("DeleteSelf", {"jobDeploymentStatus": "Failed"})] * 2)),
    (913, lambda d, s, c, g: rules(s, ("DeleteWorkers", {**OK, "ttlSeconds": 60}),
                                   ("DeleteCluster", {**OK, "ttlSeconds": 10}))),
    (562, lambda d, s, c, g: (selector(s), put(s, suspend=True))),
    (565, lambda d, s, c, g: s.pop("rayClusterSpec")),
    (570, lambda d, s, c, g: selector(s, "")),
    (573, lambda d, s, c, g: (selector(s), put(s, submissionMode="SidecarMode"))),
    (576, lambda d, s, c, g: (selector(s), put(s, backoffLimit=2))),
    (588, lambda d, s, c, g: put(s, submissionMode="InteractiveMode", backoffLimit=1)),
    (593, lambda d, s, c, g: put(s, submissionMode="SidecarMode", submitterPodTemplate={})),
    (597, lambda d, s, c, g: put(s, submissionMode="SidecarMode", submitterConfig={})),
    (601, lambda d, s, c, g: (put(s, submissionMode="SidecarMode"),
                              c["headGroupSpec"]["template"]["spec"].update(restartPolicy="Always"))),
    (607, lambda d, s, c, g: c["authOptions"].update(enableK8sTokenAuth=True)),
    (609, lambda d, s, c, g: put(g, minReplicas=2)),
    (616, lambda d, s, c, g: put(s, runtimeEnvYAML="- env_vars\n- pip\n")),
    (620, lambda d, s, c, g: put(s, activeDeadlineSeconds=0)),
    (623, lambda d, s, c, g: put(s, preRunningDeadlineSeconds=0)),
    (626, lambda d, s, c, g: put(s, backoffLimit=-1)),
]


def _cases(table: list[tuple]) -> list[tuple]:
    """(ref, edit, gates) with the ref spelt out and the default gates where none are given."""
    return [(f"validation.go:{c[0]}" if isinstance(c[0], int) else c[0], c[1], c[2] if len(c) > 2 else None)
            for c in table]


def _refused(errors: list[str], ref: str) -> bool:
    return any(e.startswith(f"{ref}: ") or f": {ref}: " in e for e in errors)


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_the_operator_accepts_the_shipped_manifest(name):
    doc = _manifest(name)
    assert (raycluster_errors(doc) if doc["kind"] == "RayCluster" else rayjob_errors(doc)) == []


@pytest.mark.parametrize("ref, edit, gates", _cases(CLUSTER), ids=[c[0] for c in _cases(CLUSTER)])
def test_a_raycluster_that_breaks_the_rule_is_refused(ref, edit, gates):
    assert _refused(errors := _rc(edit, gates), ref), errors


@pytest.mark.parametrize("ref, edit, gates", _cases(JOB), ids=[c[0] for c in _cases(JOB)])
def test_a_rayjob_that_breaks_the_rule_is_refused(ref, edit, gates):
    assert _refused(errors := _job(edit, gates), ref), errors


def test_every_encoded_rule_has_a_case_and_the_gated_lines_are_named():
    cases = [c[0] for c in _cases(CLUSTER + JOB)] + ["validation.go:125"]  # below: CRD defaults off
    assert sorted(cases) == sorted(KNOWN)
    assert all(k.startswith("validation.go:") for k in UNREACHABLE)


def test_min_and_max_replicas_are_defaulted_before_the_operator_checks_them():
    """L125 fires only on a spec that skipped the CRD's defaults (minReplicas 0, maxReplicas 2^31-1)."""
    spec = _manifest("raycluster.yaml")["spec"]
    off(spec, spec["workerGroupSpecs"][0])
    spec["workerGroupSpecs"][0].pop("minReplicas")
    assert cluster_spec_errors(spec) == []
    assert _refused(cluster_spec_errors(spec, crd_defaults=False), "validation.go:125")


def test_what_v1_7_accepts_where_the_old_rules_refused():
    # priority 0 is the CRD's default and L1115 skips it, with any autoscaler
    assert _rc(lambda d, s, h, g: (put(g, priority=0), off(s, g))) == []
    # a suspended worker group without autoscaling: RayJobDeletionPolicy is on by default (features.go:107)
    assert _rc(lambda d, s, h, g: (off(s, g), put(g, suspend=True))) == []
    # deletionStrategy, legacy (with shutdown) or rules (without), under the default gates
    assert _job(lambda d, s, c, g: legacy(s, "DeleteCluster", "DeleteCluster")) == []
    assert _job(lambda d, s, c, g: rules(s, ("DeleteWorkers", {**OK, "ttlSeconds": 0}),
                                         ("DeleteCluster", {**OK, "ttlSeconds": 60}),
                                         ("DeleteCluster", {"jobStatus": "FAILED"}))) == []
    # upgradeStrategy on a RayCluster of its own; upper-case group names outside network policies
    assert _rc(lambda d, s, h, g: (put(s, upgradeStrategy={"type": "Recreate"}),
                                   put(g, groupName="GPU"))) == []
    # node labels with a prefix, and an empty value
    assert _rc(lambda d, s, h, g: put(g, labels={"ray.io/accelerator-type": "A100", "pool": ""})) == []
    # an empty runtime env, and clusterSelector mode with the cluster named
    assert _job(lambda d, s, c, g: (put(s, runtimeEnvYAML=""), selector(s))) == []


def test_a_runtime_env_that_is_not_a_map_is_refused_whatever_its_yaml():
    for text in ("just a string", "42", "[1, 2]", "env_vars: [unclosed"):
        assert _refused(_job(lambda d, s, c, g, t=text: put(s, runtimeEnvYAML=t)), "validation.go:616"), text


def test_the_alpha_gates_rules_are_not_claimed():
    with pytest.raises(NotImplementedError):
        raycluster_errors(_manifest("raycluster.yaml"), {"RayClusterMTLS": True})


def test_rays_version_is_parsed_as_the_operator_parses_it():
    assert parse_generic("2.60.0") == (2, 60, 0) and parse_generic("v2.60") == (2, 60)
    assert parse_generic("2.60.0rc1") == (2, 60, 0)  # the rest is not read
    assert parse_generic("2") is None and parse_generic("02.60") is None and parse_generic("nightly") is None


FLOOR = re.compile(r"KubeRay operator,? v(\d+\.\d+(?:\.\d+)?) or later")


def _floor_problem(doc: dict, text: str) -> str | None:
    """None when every 'KubeRay operator, vX or later' in ``text`` (comment lines joined) names the
    release the manifest's fields need."""
    claimed = FLOOR.findall(re.sub(r"\s*\n#?\s*", " ", text))
    need = required_operator(doc)
    if not claimed:
        return "no 'KubeRay operator, vX or later'"
    if all(c == need for c in claimed):
        return None
    return f"says v{', v'.join(claimed)}; its fields need v{need}"


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_the_documented_operator_floor_is_the_one_the_fields_need(name):
    doc, text = _manifest(name), (KUBERAY / name).read_text()
    assert required_operator(doc) == "1.5.1"  # authOptions (and authOptions.mode)
    assert _floor_problem(doc, text) is None
    assert _floor_problem(doc, REPO.joinpath("README.md").read_text()) is None
    # the floor the files said before authOptions: its CRDs would drop the token
    assert "v1.4" in _floor_problem(doc, "Needs the KubeRay operator, v1.4.0 or later")


def test_the_floor_follows_the_fields():
    doc = _manifest("raycluster.yaml")
    assert {"authOptions", "authOptions.mode", "autoscalerOptions.version",
            "workerGroupSpecs[].idleTimeoutSeconds"} <= used_fields(doc)
    doc["spec"].pop("authOptions")
    assert required_operator(doc) == "1.4.0"  # autoscalerOptions.version
    doc["spec"]["workerGroupSpecs"][0]["priority"] = 0
    assert required_operator(doc) == "1.7.0"
    assert all(re.fullmatch(r"1\.[1-7]\.\d", v) for v in FIRST_RELEASE.values())
