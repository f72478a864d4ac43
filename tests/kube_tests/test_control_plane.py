"""The test control plane itself (tests/kube_cluster.py): Jobs run to their end on the KWOK node with the
statuses each outcome annotation promises (tests/kwok_stages.yaml), deletion ends, PodSecurity and RBAC
are enforced for real, and a watch from a compacted resourceVersion answers 410 Gone."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_cluster import SERVICE_ACCOUNT_ISSUER, ControlPlane, KubeApiError, Outcome, wait_for
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.timeout(60)

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}


def pod_spec(*, init: bool = True) -> dict[str, Any]:
    """The shape of an agent pod: an init container `fetch`, the container `agent`, restricted."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "agent", "image": "registry.example/codex-sys/agent:test",
                        "securityContext": CONTAINER_SECURITY}],
    }
    if init:
        spec["initContainers"] = [{"name": "fetch", "image": "registry.example/codex-sys/runner:test",
                                   "securityContext": CONTAINER_SECURITY}]
    return spec


def job_body(name: str, annotations: dict[str, str], *, ttl: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"backoffLimit": 0,
                            "template": {"metadata": {"annotations": annotations}, "spec": pod_spec()}}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


PodEvent = tuple[float, str, dict[str, Any]]


def follow_pods(core: client.CoreV1Api, namespace: str, selector: str, resource_version: str,
                until: Callable[[str, dict[str, Any]], bool], timeout_s: int = 20) -> list[PodEvent]:
    """Every pod event (time seen, type, raw pod) from `resource_version` on, up to the first for which
    `until(type, pod)` holds."""
    seen: list[PodEvent] = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, namespace, label_selector=selector,
                          resource_version=resource_version, timeout_seconds=timeout_s, deserialize=False):
        seen.append((time.monotonic(), event["type"], event["object"]))
        if until(event["type"], event["object"]):
            w.stop()
            return seen
    raise AssertionError(f"pods {selector} never reached the awaited state; saw "
                         f"{[(t, p.get('status', {}).get('phase')) for _, t, p in seen]}")


def phase_is(*phases: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda _type, pod: pod.get("status", {}).get("phase") in phases


def container(pod: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    statuses = pod["status"].get("initContainerStatuses" if init else "containerStatuses") or []
    return next(s for s in statuses if s["name"] == name)


def job_condition(batch: client.BatchV1Api, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
    job = batch.api_client.sanitize_for_serialization(batch.read_namespaced_job(name, namespace))
    conditions = job.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind and c["status"] == "True"), None)


@pytest.fixture
def admin(kube_cluster: ControlPlane, tmp_path: Path) -> Iterator[client.ApiClient]:
    kubeconfig = kube_cluster.write_kubeconfig(tmp_path / "admin", kube_cluster.admin_token)
    api = config.new_client_from_config(str(kubeconfig))
    yield api
    api.close()


@pytest.fixture
def namespace(kube_cluster: ControlPlane) -> Iterator[str]:
    name = f"cp-{uuid.uuid4().hex[:10]}"
    kube_cluster.create_namespace(name, RESTRICTED)
    yield name
    kube_cluster.api("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
def core(admin: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(admin)


@pytest.fixture
def batch(admin: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(admin)


# ---- Jobs on the KWOK node ----------------------------------------------------------------------------


def test_the_fake_node_is_ready_untainted_and_roomy(kube_cluster: ControlPlane, core: client.CoreV1Api) -> None:
    node = core.read_node(kube_cluster.node_name)
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert not node.spec.taints
    assert node.status.allocatable["pods"] == "250"


def test_a_job_pod_is_scheduled_runs_and_succeeds(kube_cluster: ControlPlane, core: client.CoreV1Api,
                                                  batch: client.BatchV1Api, namespace: str) -> None:
    created = batch.create_namespaced_job(namespace, job_body("ok", {Outcome.DELAY_MS: "2500"}))
    events = follow_pods(core, namespace, "job-name=ok", created.metadata.resource_version, phase_is("Succeeded"))

    pods = {p["metadata"]["name"] for _, _, p in events}
    assert len(pods) == 1
    phases = [p["status"].get("phase") for _, _, p in events]
    assert phases.index("Pending") < phases.index("Running") < phases.index("Succeeded")
    running_at, _, running = next(e for e in events if e[2]["status"].get("phase") == "Running")
    assert running["spec"]["nodeName"] == kube_cluster.node_name
    assert {"type": "PodScheduled", "status": "True"}.items() <= next(
        c for c in running["status"]["conditions"] if c["type"] == "PodScheduled").items()
    assert container(running, "fetch", init=True)["state"]["terminated"]["exitCode"] == 0
    agent = container(running, "agent")
    assert agent["ready"] is True
    assert agent["state"]["running"]["startedAt"]
    assert running["status"]["podIP"]

    done_at, _, done = events[-1]
    # The containers ran for kwok.codex-sys.dev/delay-ms (2.5 s), not the default 1 s.
    assert done_at - running_at > 2.2
    terminated = container(done, "agent")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    complete = wait_for(lambda: job_condition(batch, namespace, "ok", "Complete"), "the Job to complete")
    assert complete["status"] == "True"
    assert batch.read_namespaced_job("ok", namespace).status.succeeded == 1


@pytest.mark.parametrize(("outcome", "phase", "exit_code", "reason", "job_condition_type"), [
    (Outcome.SUCCEED, "Succeeded", 0, "Completed", "Complete"),
    (Outcome.FAIL, "Failed", 1, "Error", "Failed"),
    (Outcome.OOM, "Failed", 137, "OOMKilled", "Failed"),
    (Outcome.EVICT, "Failed", 137, "Error", "Failed"),
])
def test_each_outcome_ends_the_pod_and_the_job_as_documented(
        core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str,
        outcome: str, phase: str, exit_code: int, reason: str, job_condition_type: str) -> None:
    created = batch.create_namespaced_job(namespace, job_body("end", {Outcome.KEY: outcome, Outcome.DELAY_MS: "200"}))
    events = follow_pods(core, namespace, "job-name=end", created.metadata.resource_version,
                         phase_is("Succeeded", "Failed"))
    pod = events[-1][2]
    assert pod["status"]["phase"] == phase
    # Every pod ran before it ended, its init container having succeeded.
    assert "Running" in [p["status"].get("phase") for _, _, p in events]
    assert container(pod, "fetch", init=True)["state"]["terminated"]["exitCode"] == 0
    terminated = container(pod, "agent")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (exit_code, reason)
    if outcome == Outcome.EVICT:
        assert pod["status"]["reason"] == "Evicted"
        assert pod["status"]["message"].startswith("The node was low on resource: memory.")
        disruption = next(c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget")
        assert (disruption["status"], disruption["reason"]) == ("True", "TerminationByKubelet")
    condition = wait_for(lambda: job_condition(batch, namespace, "end", job_condition_type),
                           f"the Job condition {job_condition_type}")
    if job_condition_type == "Failed":
        assert condition["reason"] == "BackoffLimitExceeded"


def test_an_image_pull_failure_leaves_the_pod_pending(core: client.CoreV1Api, batch: client.BatchV1Api,
                                                      namespace: str) -> None:
    created = batch.create_namespaced_job(namespace, job_body("pull", {Outcome.KEY: Outcome.IMAGE_PULL}))

    def agent_waiting(reason: str) -> Callable[[str, dict[str, Any]], bool]:
        def check(_type: str, pod: dict[str, Any]) -> bool:
            statuses = pod["status"].get("containerStatuses") or []
            return any((s.get("state", {}).get("waiting") or {}).get("reason") == reason for s in statuses)
        return check

    events = follow_pods(core, namespace, "job-name=pull", created.metadata.resource_version,
                         agent_waiting("ImagePullBackOff"))
    assert {p["status"].get("phase") for _, _, p in events} == {"Pending"}
    pulled = next(p for _, _, p in events if agent_waiting("ErrImagePull")("", p))
    err_pull = container(pulled, "agent")["state"]["waiting"]
    assert err_pull["message"].startswith("rpc error: code = NotFound desc = failed to pull and unpack image "
                                          '"registry.example/codex-sys/agent:test"')
    back_off = container(events[-1][2], "agent")["state"]["waiting"]
    assert back_off["message"].startswith(
        'Back-off pulling image "registry.example/codex-sys/agent:test": ErrImagePull: rpc error:')
    # The init container did run, and Kubernetes never fails the Job for a pull error by itself.
    assert container(events[-1][2], "fetch", init=True)["state"]["terminated"]["reason"] == "Completed"
    time.sleep(1.0)
    job = batch.read_namespaced_job("pull", namespace)
    assert job.status.active == 1
    assert not [c for c in job.status.conditions or [] if c.status == "True"]
    assert core.list_namespaced_pod(namespace, label_selector="job-name=pull").items[0].status.phase == "Pending"


def test_a_running_job_deleted_in_the_background_goes_away_with_its_pod(
        core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str) -> None:
    created = batch.create_namespaced_job(namespace, job_body("run", {Outcome.KEY: Outcome.RUN,
                                                                     Outcome.DELAY_MS: "100"}))
    rv = created.metadata.resource_version
    follow_pods(core, namespace, "job-name=run", rv, phase_is("Running"))
    time.sleep(1.0)
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=run").items
    assert pod.status.phase == "Running"
    assert pod.status.container_statuses[0].ready is True

    batch.delete_namespaced_job("run", namespace, propagation_policy="Background")
    events = follow_pods(core, namespace, "job-name=run", pod.metadata.resource_version,
                         lambda kind, _pod: kind == "DELETED")
    last = events[-1][2]
    # Stopped like a kubelet stops a deleted pod (SIGTERM) before it was removed.
    assert last["status"]["phase"] == "Failed"
    assert container(last, "agent")["state"]["terminated"]["exitCode"] == 143
    wait_for(lambda: not batch.list_namespaced_job(namespace).items, "the Job to be deleted")


def test_a_finished_job_with_a_ttl_is_deleted_with_its_pod(core: client.CoreV1Api, batch: client.BatchV1Api,
                                                           namespace: str) -> None:
    batch.create_namespaced_job(namespace, job_body("ttl", {Outcome.DELAY_MS: "100"}, ttl=0))
    wait_for(lambda: core.list_namespaced_pod(namespace, label_selector="job-name=ttl").items, "the Job's pod")
    wait_for(lambda: not batch.list_namespaced_job(namespace).items, "the TTL controller to delete the Job")
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, "the garbage collector to delete the pod")


# ---- admission and authorization ----------------------------------------------------------------------


def test_pod_security_restricted_refuses_a_privileged_pod_and_admits_a_restricted_one(
        kube_cluster: ControlPlane, core: client.CoreV1Api, namespace: str) -> None:
    host = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "host"}, "spec": {
        "hostNetwork": True, "restartPolicy": "Never",
        "containers": [{"name": "agent", "image": "registry.example/any:1",
                        "securityContext": {"runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}}}]}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, host)
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in json.loads(refused.value.body)["message"]

    # The same pod is admitted where no Pod Security level is enforced: the namespace label decides.
    open_namespace = f"open-{uuid.uuid4().hex[:8]}"
    kube_cluster.create_namespace(open_namespace)
    try:
        core.create_namespaced_pod(open_namespace, {**host, "metadata": {"name": "host",
                                                                         "annotations": {Outcome.KEY: Outcome.RUN}}})
        # Privileged containers stay refused everywhere (--allow-privileged=false).
        privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"}, "spec": {
            "containers": [{"name": "agent", "image": "registry.example/any:1",
                            "securityContext": {"privileged": True}}]}}
        with pytest.raises(ApiException) as forbidden:
            core.create_namespaced_pod(open_namespace, privileged)
        assert forbidden.value.status == 422
        assert "disallowed by cluster policy" in json.loads(forbidden.value.body)["message"]
    finally:
        kube_cluster.api("DELETE", f"/api/v1/namespaces/{open_namespace}")

    restricted = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "restricted"}, "spec": pod_spec()}
    admitted = core.create_namespaced_pod(namespace, restricted)
    assert admitted.metadata.uid


def test_a_service_account_token_is_allowed_what_its_role_grants_and_nothing_else(
        kube_cluster: ControlPlane, core: client.CoreV1Api, admin: client.ApiClient, namespace: str,
        tmp_path: Path) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "reader"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"k": "v"}})

    token = kube_cluster.service_account_token(namespace, "reader", expiration_s=600)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["iss"] == SERVICE_ACCOUNT_ISSUER
    assert claims["sub"] == f"system:serviceaccount:{namespace}:reader"
    assert claims["exp"] - claims["iat"] == 600

    reader_api = config.new_client_from_config(str(kube_cluster.write_kubeconfig(tmp_path / "reader", token)))
    try:
        reader = client.CoreV1Api(reader_api)
        assert reader.read_namespaced_config_map("settings", namespace).data == {"k": "v"}
        assert [c.metadata.name for c in reader.list_namespaced_config_map(namespace).items if c.metadata.name
                == "settings"] == ["settings"]
        denied: list[Callable[[], object]] = [
            lambda: reader.list_namespaced_secret(namespace),
            lambda: reader.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}}),
            lambda: reader.list_namespaced_config_map("default"),
            reader.list_node,
        ]
        for call in denied:
            with pytest.raises(ApiException) as refused:
                call()
            assert refused.value.status == 403
    finally:
        reader_api.close()

    with pytest.raises(KubeApiError) as unknown:
        kube_cluster.api("GET", f"/api/v1/namespaces/{namespace}/configmaps", token="not-a-token")
    assert unknown.value.status == 401


# ---- watches ----------------------------------------------------------------------------------------------


def watch_jobs_for_step(batch: client.BatchV1Api, namespace: str, resource_version: str, step: str) -> str:
    """Watches Jobs from `resource_version` until one labelled step=`step`; that event's type."""
    w = watch.Watch()
    for event in w.stream(batch.list_namespaced_job, namespace, resource_version=resource_version, timeout_seconds=5):
        if (event["object"].metadata.labels or {}).get("step") == step:
            w.stop()
            return str(event["type"])
    raise AssertionError(f"no Job labelled step={step} was seen")


def test_a_watch_from_a_compacted_resource_version_is_gone(kube_cluster: ControlPlane, batch: client.BatchV1Api,
                                                           namespace: str) -> None:
    created = batch.create_namespaced_job(namespace, job_body("watched", {Outcome.KEY: Outcome.RUN}))
    old = created.metadata.resource_version
    batch.patch_namespaced_job("watched", namespace, {"metadata": {"labels": {"step": "1"}}})
    # Before compaction the old resourceVersion is still served: the watch replays the change.
    assert watch_jobs_for_step(batch, namespace, old, "1") == "MODIFIED"

    revision = kube_cluster.compact()
    assert revision > int(old)
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(batch.list_namespaced_job, namespace, resource_version=old, timeout_seconds=5):
            pass
    assert gone.value.status == 410
    assert "too old" in str(gone.value.reason)

    # What a watcher does then: list again and watch from the list's resourceVersion.
    listed = batch.list_namespaced_job(namespace)
    batch.patch_namespaced_job("watched", namespace, {"metadata": {"labels": {"step": "2"}}})
    assert watch_jobs_for_step(batch, namespace, listed.metadata.resource_version, "2") == "MODIFIED"
