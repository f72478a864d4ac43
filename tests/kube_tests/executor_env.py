"""What the executor's tests share: an agent namespace with the worker's ServiceAccount and Role (the
executor runs as that account, never as an administrator), a MinIO bucket with a snapshot, and a
stand-in for the agent container.

KWOK moves pods through their phases but runs no container (there is no container runtime here), so
`play_container` does what the pod's two containers would do over the network: it reads the task's
Secret, downloads the pack through its presigned URL (checking the digest) and uploads the outputs
through the presigned PUT URLs. The programs that really run in the pod are tested on their own
(`tests/pod_tests`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from agent.wire import AgentTaskSpec
from runner.adapters.kubernetes import KubernetesSettings, Peer, rbac
from runner.adapters.minio import MinioBlobStore
from runner.domain.models import Digest, FileKind, Manifest, ManifestEntry, TaskLimits, TaskRecord
from runner.ports import SandboxJob

TENANT = "tenant-a"
OUTCOME = "kwok.codex-sys.dev/outcome"
DELAY = "kwok.codex-sys.dev/delay-ms"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}


def admin_client(cluster: Any, tmp_path: Path) -> client.ApiClient:
    path = cluster.write_kubeconfig(tmp_path / "admin.kubeconfig", cluster.admin_token)
    return config.new_client_from_config(str(path))


def agent_namespace(cluster: Any, admin: client.ApiClient, tmp_path: Path) -> tuple[str, Path]:
    """A restricted namespace with the worker's account; the kubeconfig of that account."""
    ns = f"agents-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(ns, RESTRICTED)
    core, authz = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "worker"}})
    authz.create_namespaced_role(ns, rbac.role("worker", ns))
    authz.create_namespaced_role_binding(ns, {
        "metadata": {"name": "worker"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "worker"},
        "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": ns}]})
    token = cluster.service_account_token(ns, "worker")
    return ns, cluster.write_kubeconfig(tmp_path / f"{ns}.kubeconfig", token)


def settings(ns: str, kubeconfig: Path, *, outcome: str = "succeed", delay_ms: int = 4000,
             worker_id: str = "worker-1", **changes: Any) -> KubernetesSettings:
    base: dict[str, Any] = dict(
        agent_image="registry.example/codex-sys-agent:test", init_image="registry.example/codex-sys-runner:test",
        gateway_url="http://10.0.0.10:8081", storage_peer=Peer.parse("cidr:10.0.0.20/32:9000", "storage peer"),
        namespace=ns, worker_id=worker_id, kubeconfig=str(kubeconfig), lease_duration_s=5,
        sweep_interval_s=3600.0, pod_annotations=((OUTCOME, outcome), (DELAY, str(delay_ms))))
    base.update(changes)
    return KubernetesSettings(**base)


async def snapshot(store: MinioBlobStore) -> Manifest:
    async def entry(path: str, kind: FileKind, data: bytes) -> ManifestEntry:
        return ManifestEntry(path, kind, await store.put_bytes(TENANT, data))

    return Manifest((await entry("README.md", FileKind.FILE, b"# demo\n"),
                     await entry("src/app.py", FileKind.FILE, b"print('hi')\n")))


def sandbox_job(manifest: Manifest, *, attempt: int = 1, task_id: str | None = None, wall_time_s: float = 120,
                notes: list[str] | None = None) -> SandboxJob:
    task_id = task_id or uuid.uuid4().hex[:16]
    record = TaskRecord(id=task_id, tenant=TENANT, instruction="add a greeting", model="scripted",
                        manifest_digest=Digest.of(b"manifest"), attempt=attempt,
                        limits=TaskLimits(wall_time_s=wall_time_s, memory_bytes=512 << 20))
    spec = AgentTaskSpec(task_id=task_id, token="secret-task-token", instruction=record.instruction,
                         model=record.model)

    async def note(text: str) -> None:
        if notes is not None:
            notes.append(text)

    return SandboxJob(task=record, attempt=attempt, manifest=manifest, agent_spec_json=spec.to_json(), notes=note)


@dataclass
class Played:
    secret: dict[str, Any]
    pack_sha256: str
    spec: dict[str, Any]


async def play_container(admin: client.ApiClient, ns: str, name: str, outputs: dict[str, bytes],
                         timeout_s: float = 20) -> Played:
    """Wait for the attempt's Secret, fetch the pack and upload `outputs` as the pod would."""
    core = client.CoreV1Api(admin)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            secret = (await asyncio.to_thread(core.read_namespaced_secret, name, ns)).to_dict()
            break
        except client.ApiException as exc:
            if exc.status != 404 or loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    transfer = json.loads(data["transfer.json"])

    def fetch_and_upload() -> str:
        with urllib.request.urlopen(transfer["pack"]["url"], timeout=10) as response:
            pack = response.read()
        assert len(pack) == transfer["pack"]["size"]
        for out_name, body in outputs.items():
            request = urllib.request.Request(transfer["outputs"][out_name], data=body, method="PUT")
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        return "sha256:" + hashlib.sha256(pack).hexdigest()

    pack_sha = await asyncio.to_thread(fetch_and_upload)
    assert pack_sha == transfer["pack"]["digest"]
    return Played(secret=secret, pack_sha256=pack_sha, spec=json.loads(data["spec.json"]))
