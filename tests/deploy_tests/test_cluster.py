"""The dev overlay applied to a real control plane (tests/kube_cluster.py: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler v1.36 and KWOK as the kubelet of one fake node).

What this proves, beyond the schemas: the API server accepts every object with strict field validation;
the Deployment and StatefulSet controllers' pods pass the PodSecurity admission of the namespaces'
`restricted` level and reach Ready (KWOK plays the kubelet: no container runs here); only the worker's
pod gets a ServiceAccount token; the worker's token may do exactly what the executor needs in the agent
namespace and nothing elsewhere, and the runner's may do nothing; a Job made by the executor's own code
is created with the worker's token and its pod is admitted in the agent namespace."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kube_cluster import ControlPlane, KubeApiError

from deploy_tests.manifests import AGENT_NS, RUNNER_NS, Obj, Rendered
from deploy_tests.processes import configure
from deploy_tests.test_rbac import PLAN
from runner.adapters.kubernetes import manifests as executor_objects

pytestmark = pytest.mark.timeout(240)

WORKLOADS = {("Deployment", "codex-sys-runner"), ("Deployment", "codex-sys-worker"), ("Deployment", "minio"),
             ("StatefulSet", "nats")}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
PROBED = (*PLAN, ("", "configmaps"), ("", "serviceaccounts"), ("apps", "deployments"),
          ("rbac.authorization.k8s.io", "roles"), ("", "events"))


def _path(obj: Obj, name: str | None = None) -> str:
    api = obj["apiVersion"]
    prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
    kind = obj["kind"].lower()
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    namespace = obj["metadata"].get("namespace")
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


def _apply(cluster: ControlPlane, objects: list[Obj]) -> None:
    for ns in (o for o in objects if o["kind"] == "Namespace"):
        cluster.create_namespace(ns["metadata"]["name"], ns["metadata"].get("labels", {}))
    for obj in objects:
        if obj["kind"] != "Namespace":
            # Strict: an unknown or duplicated field is an error here, not a warning.
            cluster.api("POST", _path(obj) + "?fieldValidation=Strict", obj)


def _volumes_for_claims(cluster: ControlPlane, dev: Rendered) -> list[str]:
    """There is no storage provisioner here: one PersistentVolume per claim the overlay makes, for the
    PersistentVolume controller to bind (KWOK never mounts them)."""
    sizes = [c["spec"]["resources"]["requests"]["storage"] for c in dev.of_kind("PersistentVolumeClaim")]
    sizes += [t["spec"]["resources"]["requests"]["storage"]
              for s in dev.of_kind("StatefulSet") for t in s["spec"].get("volumeClaimTemplates", [])]
    names = []
    for n, size in enumerate(sizes):
        name = f"deploy-tests-pv-{n}"
        cluster.api("POST", "/api/v1/persistentvolumes", {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/{name}"}}})
        names.append(name)
    return names


@pytest.fixture(scope="module")
def applied(kube_cluster: ControlPlane, dev: Rendered) -> Iterator[ControlPlane]:
    volumes = _volumes_for_claims(kube_cluster, dev)
    _apply(kube_cluster, dev.objects)
    yield kube_cluster
    for ns in (RUNNER_NS, AGENT_NS):
        kube_cluster.api("DELETE", f"/api/v1/namespaces/{ns}")
    for name in volumes:
        kube_cluster.api("DELETE", f"/api/v1/persistentvolumes/{name}")


def _eventually(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.1)


def _ready(cluster: ControlPlane, kind: str, name: str) -> bool:
    obj = cluster.api("GET", _path({"apiVersion": "apps/v1", "kind": kind, "metadata": {"namespace": RUNNER_NS}},
                                   name))
    return bool(obj["status"].get("readyReplicas", 0) == obj["spec"]["replicas"] > 0)


def _pods(cluster: ControlPlane, namespace: str, selector: str) -> list[dict[str, Any]]:
    answer = cluster.api("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")
    return list(answer["items"])


def test_every_workload_is_admitted_as_restricted_and_becomes_ready(applied: ControlPlane) -> None:
    deadline = time.monotonic() + 120
    pending = set(WORKLOADS)
    while pending and time.monotonic() < deadline:
        pending = {w for w in pending if not _ready(applied, *w)}
        time.sleep(0.2)
    if pending:
        events = applied.api("GET", f"/api/v1/namespaces/{RUNNER_NS}/events")["items"]
        raise AssertionError(f"not ready: {sorted(pending)}; events: "
                             f"{[(e['involvedObject']['name'], e['reason'], e['message']) for e in events][-15:]}")


def test_only_the_worker_pod_carries_a_service_account_token(applied: ControlPlane) -> None:
    _eventually(lambda: all(_ready(applied, *w) for w in WORKLOADS), "the workloads", timeout_s=120)
    for component, token in (("runner", False), ("worker", True)):
        [pod] = _pods(applied, RUNNER_NS, f"app.kubernetes.io/component%3D{component}")
        projected = [v for v in pod["spec"]["volumes"] if "projected" in v]
        assert bool(projected) is token, (component, [v["name"] for v in pod["spec"]["volumes"]])
    for name in ("nats", "minio"):
        [pod] = _pods(applied, RUNNER_NS, f"app.kubernetes.io/name%3D{name}")
        assert not [v for v in pod["spec"]["volumes"] if "projected" in v], name


@pytest.mark.parametrize("namespace", [RUNNER_NS, AGENT_NS])
def test_the_namespaces_refuse_a_pod_that_is_not_restricted(applied: ControlPlane, namespace: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "not-restricted"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    with pytest.raises(KubeApiError) as refused:
        applied.api("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
    assert refused.value.status == 403 and "violates PodSecurity \"restricted:latest\"" in str(refused.value)


def _can(cluster: ControlPlane, token: str, verb: str, group: str, resource: str, namespace: str) -> bool:
    subresource = ""
    if "/" in resource:
        resource, subresource = resource.split("/", 1)
    review = cluster.api("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": namespace, "verb": verb, "group": group, "resource": resource,
                                        "subresource": subresource}}}, token=token)
    return bool(review["status"]["allowed"])


def test_the_worker_may_do_exactly_what_the_executor_needs(applied: ControlPlane) -> None:
    token = applied.service_account_token(RUNNER_NS, "codex-sys-worker")
    wrong = []
    for namespace in (AGENT_NS, RUNNER_NS, "default"):
        for group, resource in (*PROBED, ("", "pods/exec"), ("", "pods/log")):
            for verb in VERBS:
                expected = namespace == AGENT_NS and verb in PLAN.get((group, resource), set())
                if _can(applied, token, verb, group, resource, namespace) != expected:
                    wrong.append((namespace, group, resource, verb, not expected))
    for verb, group, resource in (("list", "", "nodes"), ("create", "", "namespaces"),
                                  ("create", "rbac.authorization.k8s.io", "clusterroles")):
        if _can(applied, token, verb, group, resource, ""):
            wrong.append(("cluster", group, resource, verb, True))
    assert not wrong, f"(namespace, group, resource, verb, allowed) that differ from the plan: {wrong}"


def test_the_runner_may_do_nothing_with_the_kubernetes_api(applied: ControlPlane) -> None:
    token = applied.service_account_token(RUNNER_NS, "codex-sys-runner")
    allowed = [(ns, g, r, v) for ns in (AGENT_NS, RUNNER_NS) for g, r in PROBED for v in VERBS
               if _can(applied, token, v, g, r, ns)]
    assert not allowed


def test_a_task_job_made_by_the_executor_is_created_with_the_worker_token_and_admitted(
        applied: ControlPlane, dev: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = configure(dev, "codex-sys-worker", "worker", monkeypatch).kubernetes
    assert settings is not None
    token = applied.service_account_token(RUNNER_NS, "codex-sys-worker")
    job = executor_objects.job(settings, task_id="d3e4f5", attempt=1, tenant="dev", memory_bytes=512 << 20,
                               wall_time_s=300)
    created = applied.api("POST", f"/apis/batch/v1/namespaces/{AGENT_NS}/jobs?fieldValidation=Strict", job,
                          token=token)
    spec_json = json.dumps({"task_id": "d3e4f5"}).encode()
    secret = executor_objects.secret(settings, created, spec_json=spec_json, transfer_json=b"{\"outputs\":{}}")
    applied.api("POST", f"/api/v1/namespaces/{AGENT_NS}/secrets?fieldValidation=Strict", secret, token=token)
    policy = executor_objects.network_policy(settings, created)
    applied.api("POST", f"/apis/networking.k8s.io/v1/namespaces/{AGENT_NS}/networkpolicies?fieldValidation=Strict",
                policy, token=token)
    # The Job controller's pod passes the agent namespace's restricted admission.
    _eventually(lambda: bool(_pods(applied, AGENT_NS, "codex-sys.dev/task%3Dd3e4f5")), "the task's pod",
                timeout_s=60)
    [pod] = _pods(applied, AGENT_NS, "codex-sys.dev/task%3Dd3e4f5")
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert not [v for v in pod["spec"]["volumes"] if "projected" in v]
    stored = applied.api("GET", f"/api/v1/namespaces/{AGENT_NS}/secrets/{secret['metadata']['name']}", token=token)
    assert base64.b64decode(stored["data"]["spec.json"]) == spec_json
    with pytest.raises(KubeApiError) as refused:
        applied.api("GET", f"/api/v1/namespaces/{RUNNER_NS}/secrets", token=token)
    assert refused.value.status == 403, "the worker must not read the runner namespace's Secrets"
