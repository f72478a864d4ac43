"""The objects of one task attempt, as plain JSON-shaped dicts (what the API server stores).

* a **Job** (`backoffLimit: 0`: the task queue owns retries) whose pod runs two containers:
  `fetch` (init, the runner's image) downloads the packed snapshot by a presigned URL into the
  `workspace` emptyDir; `agent` (the agent image) runs the agent and uploads its outputs by presigned PUT
  URLs. The pod has no credentials: no ServiceAccount token, no storage keys; its task Secret holds the
  agent's spec (with the per-task gateway token) and the presigned URLs.
* a **Secret** with `spec.json` and `transfer.json`, owned by the Job (deleted with it);
* a **NetworkPolicy** owned by the Job: no ingress; egress only to the gateway, DNS and the object
  store. (NetworkPolicies apply to init containers too, so the fetch is covered.)

Security context: the restricted Pod Security Standard and then some (read-only root filesystem,
`automountServiceAccountToken: false`, no service links). Limits come from the task: memory from its
memory limit, ephemeral storage from the workspace size, CPU from the settings.
"""

from __future__ import annotations

from typing import Any

from runner.adapters.kubernetes import names
from runner.adapters.kubernetes.settings import KubernetesSettings, Peer

Obj = dict[str, Any]

TASK_DIR = "/run/codex/task"
SPEC_FILE = "spec.json"
TRANSFER_FILE = "transfer.json"
AGENT_CONTAINER = "agent"
FETCH_CONTAINER = "fetch"
UID = 1000

_CONTAINER_SECURITY: Obj = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": UID,
    "runAsGroup": UID,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _meta(name: str, namespace: str, labels: dict[str, str], owner: Obj | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner is not None:
        meta["ownerReferences"] = [{
            "apiVersion": "batch/v1", "kind": "Job", "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": False}]
    return meta


def job(settings: KubernetesSettings, *, task_id: str, attempt: int, tenant: str, memory_bytes: int,
        wall_time_s: float) -> Obj:
    name = names.job_name(task_id, attempt)
    labels = names.labels(task_id, attempt, tenant, settings.worker_id)
    pod_labels = {**dict(settings.pod_labels), **labels}
    mounts = [
        {"name": "workspace", "mountPath": "/workspace"},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "task", "mountPath": TASK_DIR, "readOnly": True},
    ]
    memory = str(max(memory_bytes, 64 << 20))
    ephemeral = settings.workspace_size
    fetch = {
        "name": FETCH_CONTAINER,
        "image": settings.init_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "runner.snapshots.fetch", "--transfer", f"{TASK_DIR}/{TRANSFER_FILE}",
                    "--into", "/workspace"],
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": ephemeral}},
        "securityContext": dict(_CONTAINER_SECURITY),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    agent = {
        "name": AGENT_CONTAINER,
        "image": settings.agent_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "agent.pod", "--task-dir", TASK_DIR, "--workspace", "/workspace",
                    "--output", "/output"],
        "workingDir": "/workspace",
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "volumeMounts": [*mounts, {"name": "output", "mountPath": "/output"}],
        "resources": {"requests": {"cpu": settings.cpu_request, "memory": memory},
                      "limits": {"cpu": settings.cpu_limit, "memory": memory, "ephemeral-storage": ephemeral}},
        "securityContext": dict(_CONTAINER_SECURITY),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: Obj = {
        "restartPolicy": "Never",
        # After SIGTERM (cancel, deadline) the agent writes its outputs and the pod uploads them.
        "terminationGracePeriodSeconds": 60,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [fetch],
        "containers": [agent],
        "volumes": [
            {"name": "workspace", "emptyDir": {"sizeLimit": settings.workspace_size}},
            {"name": "output", "emptyDir": {"sizeLimit": settings.output_size}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "task", "secret": {"secretName": name, "defaultMode": 0o440}},
        ],
    }
    if settings.runtime_class:
        pod_spec["runtimeClassName"] = settings.runtime_class
    template_meta: Obj = {"labels": pod_labels}
    if settings.pod_annotations:
        template_meta["annotations"] = dict(settings.pod_annotations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(name, settings.namespace, labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(wall_time_s)) + settings.deadline_slack_s,
            "ttlSecondsAfterFinished": settings.job_ttl_s,
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def secret(settings: KubernetesSettings, owner: Obj, *, spec_json: bytes, transfer_json: bytes) -> Obj:
    labels = dict(owner["metadata"]["labels"])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(owner["metadata"]["name"], settings.namespace, labels, owner),
        "type": "Opaque",
        "immutable": True,
        "stringData": {SPEC_FILE: spec_json.decode(), TRANSFER_FILE: transfer_json.decode()},
    }


def _peer(peer: Peer, udp: bool = False) -> Obj:
    target: Obj
    if peer.cidr:
        target = {"ipBlock": {"cidr": peer.cidr}}
    else:
        target = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer.namespace}},
                  "podSelector": {"matchLabels": dict(peer.pod_labels)}}
    ports: list[Obj] = [{"protocol": "TCP", "port": peer.port}]
    if udp:
        ports.insert(0, {"protocol": "UDP", "port": peer.port})
    return {"to": [target], "ports": ports}


def network_policy(settings: KubernetesSettings, owner: Obj) -> Obj:
    labels = dict(owner["metadata"]["labels"])
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(owner["metadata"]["name"], settings.namespace, labels, owner),
        "spec": {
            "podSelector": {"matchLabels": {names.TASK: labels[names.TASK], names.ATTEMPT: labels[names.ATTEMPT]}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [_peer(settings.gateway_peer), _peer(settings.dns_peer, udp=True),
                       _peer(settings.storage_peer)],
        },
    }


def lease(settings: KubernetesSettings, renew_time: str, resource_version: str | None = None) -> Obj:
    meta: Obj = {"name": names.worker_lease(settings.worker_id), "namespace": settings.namespace,
                 "labels": {names.MANAGED_BY: names.MANAGER, names.WORKER: names.label_value(settings.worker_id)}}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {"holderIdentity": settings.worker_id, "leaseDurationSeconds": settings.lease_duration_s,
                 "renewTime": renew_time},
    }
