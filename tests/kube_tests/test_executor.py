"""The Kubernetes executor against a real kube-apiserver (with etcd, the Job controller, the scheduler
and KWOK playing the kubelet), as the worker's ServiceAccount, with the session's real MinIO."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client

from agent.wire import AgentResult
from runner.adapters.kubernetes import KubernetesExecutor, KubernetesSettings, manifests, names, rbac
from runner.adapters.minio import MinioBlobStore, S3Settings
from runner.domain.errors import FailedPrecondition
from runner.domain.models import Digest

from .executor_env import (
    TENANT,
    admin_client,
    agent_namespace,
    play_container,
    sandbox_job,
    settings,
    snapshot,
)

pytestmark = pytest.mark.timeout(120)

RESULT = AgentResult(status="completed", files_changed=1, steps=3)
DIFF = b"diff --git a/README.md b/README.md\n"


@pytest.fixture
def admin(kube_cluster: Any, tmp_path: Path) -> client.ApiClient:
    return admin_client(kube_cluster, tmp_path)


@pytest.fixture
def namespace(kube_cluster: Any, admin: client.ApiClient, tmp_path: Path) -> tuple[str, Path]:
    return agent_namespace(kube_cluster, admin, tmp_path)


@pytest.fixture
async def store(minio_server: Any, tmp_path: Path) -> AsyncIterator[MinioBlobStore]:
    s3 = S3Settings(endpoint=minio_server.endpoint, access_key=minio_server.access_key,
                    secret_key=minio_server.secret_key, bucket=f"k{uuid.uuid4().hex[:12]}")
    async with await MinioBlobStore.open(s3, max_blob_size=64 << 20, spool_dir=tmp_path) as opened:
        yield opened


def executor_for(s: KubernetesSettings, store: MinioBlobStore) -> KubernetesExecutor:
    return KubernetesExecutor(s, store, store, store.packs)


def jobs_of(admin: client.ApiClient, ns: str, task_id: str) -> list[Any]:
    return list(client.BatchV1Api(admin).list_namespaced_job(
        ns, label_selector=f"{names.TASK}={task_id}").items)


async def wait_gone(admin: client.ApiClient, ns: str, name: str, timeout_s: float = 30) -> None:
    batch = client.BatchV1Api(admin)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            await asyncio.to_thread(batch.read_namespaced_job, name, ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        await asyncio.sleep(0.2)
    raise AssertionError(f"Job {name} still exists after {timeout_s} s")


async def test_a_task_runs_as_a_restricted_job_and_its_outputs_come_back(
        admin: client.ApiClient, namespace: tuple[str, Path], store: MinioBlobStore) -> None:
    ns, kubeconfig = namespace
    notes: list[str] = []
    manifest = await snapshot(store)
    job = sandbox_job(manifest, notes=notes)
    name = names.job_name(job.task.id, 1)
    async with asyncio.timeout(90):
        executor = executor_for(settings(ns, kubeconfig), store)
        try:
            run = asyncio.create_task(executor.run(job))
            played = await play_container(admin, ns, name, {
                "result.json": RESULT.to_json(), "diff.patch": DIFF, "agent.log": b"agent says hi\n"})
            outcome = await run
        finally:
            await executor.close()
    assert outcome.exit_code == 0 and not outcome.timed_out and outcome.detail == ""
    assert outcome.result_json is not None and AgentResult.from_json(outcome.result_json) == RESULT
    stored = {a.name: a.digest for a in outcome.artifacts}
    assert set(stored) == {"diff.patch", "agent.log"}
    assert await store.get_bytes(TENANT, stored["diff.patch"]) == DIFF
    assert stored["agent.log"] == Digest.of(b"agent says hi\n")
    # The pod got the worker's gateway URL and the task's token in its spec, and nothing else secret.
    assert played.spec["gateway_url"] == "http://10.0.0.10:8081" and played.spec["token"] == "secret-task-token"
    assert any("agent container started" in n for n in notes), notes
    assert any(f"Job {name} created" in n for n in notes), notes

    # The Job as stored by the API server (admitted by the namespace's restricted Pod Security).
    stored_job = client.BatchV1Api(admin).read_namespaced_job(name, ns).to_dict()
    spec = stored_job["spec"]
    assert spec["backoff_limit"] == 0 and spec["ttl_seconds_after_finished"] == 600
    assert spec["active_deadline_seconds"] == 120 + 120
    pod_spec = spec["template"]["spec"]
    assert pod_spec["automount_service_account_token"] is False
    assert pod_spec["security_context"]["run_as_non_root"] is True
    assert pod_spec["security_context"]["seccomp_profile"]["type"] == "RuntimeDefault"
    for container in (*pod_spec["init_containers"], *pod_spec["containers"]):
        sc = container["security_context"]
        assert sc["allow_privilege_escalation"] is False and sc["read_only_root_filesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"]["ephemeral-storage"] == "4Gi"
    agent = pod_spec["containers"][0]
    assert agent["resources"]["limits"]["memory"] == str(512 << 20)
    labels = stored_job["metadata"]["labels"]
    assert labels[names.TASK] == job.task.id and labels[names.ATTEMPT] == "1" and labels[names.TENANT] == TENANT
    # Secret and NetworkPolicy belong to the Job.
    uid = stored_job["metadata"]["uid"]
    assert [o["uid"] for o in played.secret["metadata"]["owner_references"]] == [uid]
    policy = client.NetworkingV1Api(admin).read_namespaced_network_policy(name, ns).to_dict()
    assert [o["uid"] for o in policy["metadata"]["owner_references"]] == [uid]
    assert policy["spec"]["ingress"] in (None, []) and set(policy["spec"]["policy_types"]) == {"Ingress", "Egress"}
    egress = policy["spec"]["egress"]
    assert len(egress) == 3
    assert egress[0]["to"][0]["pod_selector"]["match_labels"] == {"app.kubernetes.io/component": "worker"}
    assert {p["protocol"] for p in egress[1]["ports"]} == {"UDP", "TCP"} and egress[1]["ports"][0]["port"] == 53
    assert egress[2]["to"][0]["ip_block"]["cidr"] == "10.0.0.20/32" and egress[2]["ports"][0]["port"] == 9000


@pytest.mark.parametrize(("outcome", "expected"), [
    ("oom", "the agent ran out of memory (limit 512 MiB) and was killed"),
    ("fail", "the agent container exited with code 1"),
    ("evict", "the pod was evicted by its node"),
])
async def test_how_a_pod_ended_is_said_in_words(admin: client.ApiClient, namespace: tuple[str, Path],
                                               store: MinioBlobStore, outcome: str, expected: str) -> None:
    ns, kubeconfig = namespace
    job = sandbox_job(await snapshot(store))
    executor = executor_for(settings(ns, kubeconfig, outcome=outcome, delay_ms=500), store)
    try:
        async with asyncio.timeout(60):
            result = await executor.run(job)
    finally:
        await executor.close()
    assert expected in result.detail, result.detail
    assert not result.timed_out and result.result_json is None


async def test_an_image_that_cannot_be_pulled_fails_the_task_at_once(
        admin: client.ApiClient, namespace: tuple[str, Path], store: MinioBlobStore) -> None:
    ns, kubeconfig = namespace
    job = sandbox_job(await snapshot(store), wall_time_s=600)
    executor = executor_for(settings(ns, kubeconfig, outcome="image-pull"), store)
    try:
        async with asyncio.timeout(60):  # far less than the Job's own deadline (600 s + slack)
            with pytest.raises(FailedPrecondition, match="could not be pulled") as caught:
                await executor.run(job)
    finally:
        await executor.close()
    assert "registry.example/codex-sys-agent:test" in str(caught.value)
    await wait_gone(admin, ns, names.job_name(job.task.id, 1))


async def test_the_deadline_ends_the_task_timed_out(admin: client.ApiClient, namespace: tuple[str, Path],
                                                    store: MinioBlobStore) -> None:
    ns, kubeconfig = namespace
    job = sandbox_job(await snapshot(store), wall_time_s=2)
    executor = executor_for(settings(ns, kubeconfig, outcome="run", deadline_slack_s=1), store)
    try:
        async with asyncio.timeout(60):
            result = await executor.run(job)
    finally:
        await executor.close()
    assert result.timed_out, result


async def test_cancel_deletes_the_job_and_its_pod(admin: client.ApiClient, namespace: tuple[str, Path],
                                                  store: MinioBlobStore) -> None:
    ns, kubeconfig = namespace
    notes: list[str] = []
    job = sandbox_job(await snapshot(store), notes=notes)
    name = names.job_name(job.task.id, 1)
    executor = executor_for(settings(ns, kubeconfig, outcome="run"), store)
    try:
        run = asyncio.create_task(executor.run(job))
        async with asyncio.timeout(30):
            while not any("agent container started" in n for n in notes):
                await asyncio.sleep(0.1)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await wait_gone(admin, ns, name)
        core = client.CoreV1Api(admin)
        async with asyncio.timeout(30):
            while core.list_namespaced_pod(ns, label_selector=f"{names.TASK}={job.task.id}").items:
                await asyncio.sleep(0.2)
    finally:
        await executor.close()


async def test_a_restarted_worker_adopts_the_job_of_the_same_attempt(
        admin: client.ApiClient, namespace: tuple[str, Path], store: MinioBlobStore) -> None:
    ns, kubeconfig = namespace
    job = sandbox_job(await snapshot(store))
    name = names.job_name(job.task.id, 1)
    first = executor_for(settings(ns, kubeconfig, delay_ms=6000), store)
    await first.start()
    # The first worker creates the attempt's Job, then dies: nothing of its run is cleaned up.
    assert await first._create_or_adopt(job, name) is False
    await first.close()
    uid = jobs_of(admin, ns, job.task.id)[0].metadata.uid
    notes: list[str] = []
    adopted_job = sandbox_job(job.manifest, task_id=job.task.id, notes=notes)
    second = executor_for(settings(ns, kubeconfig), store)
    try:
        async with asyncio.timeout(60):
            running = asyncio.create_task(second.run(adopted_job))
            await play_container(admin, ns, name, {"result.json": RESULT.to_json()})
            outcome = await running
    finally:
        await second.close()
    assert [j.metadata.uid for j in jobs_of(admin, ns, job.task.id)] == [uid]
    assert any(f"Job {name} adopted" in n for n in notes), notes
    assert outcome.exit_code == 0 and outcome.result_json == RESULT.to_json()


async def test_orphans_of_a_dead_worker_are_deleted_and_a_live_workers_are_not(
        admin: client.ApiClient, namespace: tuple[str, Path], store: MinioBlobStore) -> None:
    ns, kubeconfig = namespace
    manifest = await snapshot(store)
    dead = executor_for(settings(ns, kubeconfig, outcome="run", worker_id="dead-worker"), store)
    alive = executor_for(settings(ns, kubeconfig, outcome="run", worker_id="live-worker"), store)
    orphan_job, live_job = sandbox_job(manifest), sandbox_job(manifest)
    sweeper = executor_for(settings(ns, kubeconfig, worker_id="sweeper"), store)
    runs = [asyncio.create_task(dead.run(orphan_job)), asyncio.create_task(alive.run(live_job))]
    try:
        async with asyncio.timeout(60):
            while not (jobs_of(admin, ns, orphan_job.task.id) and jobs_of(admin, ns, live_job.task.id)):
                await asyncio.sleep(0.1)
            # The dead worker stops renewing its Lease (its background tasks stop with it).
            for task in dead._background:
                task.cancel()
            await asyncio.sleep(6)  # past its 5 s lease
            await sweeper.start()
            await sweeper.sweep()
            await wait_gone(admin, ns, names.job_name(orphan_job.task.id, 1))
            assert jobs_of(admin, ns, live_job.task.id), "a live worker's Job was swept"
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for executor in (dead, alive, sweeper):
            await executor.close()


async def test_a_worker_without_the_role_is_told_what_is_missing(
        kube_cluster: Any, admin: client.ApiClient, namespace: tuple[str, Path], store: MinioBlobStore,
        tmp_path: Path) -> None:
    ns, _ = namespace
    client.CoreV1Api(admin).create_namespaced_service_account(ns, {"metadata": {"name": "nobody"}})
    kubeconfig = kube_cluster.write_kubeconfig(tmp_path / "nobody", kube_cluster.service_account_token(ns, "nobody"))
    executor = executor_for(settings(ns, kubeconfig), store)
    try:
        with pytest.raises(FailedPrecondition, match="ServiceAccount and Role"):
            await executor.start()
    finally:
        await executor.close()


def test_every_generated_object_passes_the_strict_schemas_of_kubernetes_1_36(tmp_path: Path) -> None:
    s = settings("agents", tmp_path / "kc", runtime_class="gvisor", pod_labels=(("team", "a"),))
    job = manifests.job(s, task_id="abc", attempt=2, tenant="t", memory_bytes=1 << 30, wall_time_s=60)
    owner = {**job, "metadata": {**job["metadata"], "uid": "00000000-0000-0000-0000-000000000001"}}
    objects = [job, manifests.secret(s, owner, spec_json=b"{}", transfer_json=b"{}"),
               manifests.network_policy(s, owner), manifests.lease(s, "2026-01-01T00:00:00.000000Z"),
               rbac.role("worker", "agents")]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.36", strict=True)
    broken = {**job, "spec": {**job["spec"], "backoffLimits": 0}}  # a misspelt field is caught
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.36", strict=True)
    assert job["metadata"]["name"] == "task-abc-2"


async def test_a_watch_whose_version_was_compacted_lists_again_and_misses_nothing(
        kube_cluster: Any, admin: client.ApiClient, namespace: tuple[str, Path], store: MinioBlobStore) -> None:
    ns, kubeconfig = namespace
    # Watches end every second, so each resumes from the last version it saw: after a compaction, 410.
    executor = executor_for(settings(ns, kubeconfig, watch_timeout_s=1), store)
    core = client.CoreV1Api(admin)
    try:
        await executor.start()
        async with asyncio.timeout(30):
            for i in range(1000):
                if executor.relists:
                    break
                # etcd moves on elsewhere while the watches are between two requests, and is compacted
                core.create_namespaced_config_map(ns, {"metadata": {"name": f"noise-{i}"}})
                kube_cluster.compact()
                await asyncio.sleep(0.3)
        job = sandbox_job(await snapshot(store))
        async with asyncio.timeout(60):
            running = asyncio.create_task(executor.run(job))
            await play_container(admin, ns, names.job_name(job.task.id, 1), {"result.json": RESULT.to_json()})
            outcome = await running
        assert outcome.exit_code == 0 and outcome.result_json == RESULT.to_json()
        assert executor.relists >= 1
    finally:
        await executor.close()
