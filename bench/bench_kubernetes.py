"""What the Kubernetes executor adds to a task's pod round trip, on the real test control plane.

Each round runs one task through `KubernetesExecutor.run` (as the worker's ServiceAccount: pack link,
Job, Secret, NetworkPolicy, watches, staged outputs read back) and, as the baseline in the same run,
creates the same Job directly as the administrator and waits with a watch until its pod has Succeeded.
KWOK plays the kubelet with no run time (`delay-ms` 0), so both measure the control plane's own path
(Job controller, scheduler, KWOK's stages) and the difference is the executor's work. Rounds alternate
so both see the same machine. Prints each side's p50 / p90 / max and the executor's overhead at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench._infra import scratch  # first: it puts tests/ on sys.path

# isort: split
from kube_cluster import ControlPlane
from kube_tests.executor_env import admin_client, agent_namespace, sandbox_job, settings, snapshot
from kubernetes import client, watch
from servers import MinioServer

from runner.adapters.kubernetes import KubernetesExecutor, manifests
from runner.adapters.minio import MinioBlobStore, S3Settings


def baseline_round(admin: client.ApiClient, ns: str, body: dict[str, Any]) -> float:
    name = body["metadata"]["name"]
    core, batch = client.CoreV1Api(admin), client.BatchV1Api(admin)
    started = time.perf_counter()
    created = batch.create_namespaced_job(ns, body, _preload_content=False)
    created.release_conn()
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_pod, ns, label_selector=f"batch.kubernetes.io/job-name={name}",
                               timeout_seconds=60):
        if event["object"].status.phase == "Succeeded":
            stream.stop()
            return time.perf_counter() - started
    raise RuntimeError(f"the pod of {name} did not succeed within 60 s")


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return f"{label:<34} p50 {statistics.median(ms):7.1f} ms   p90 {p90:7.1f} ms   max {ms[-1]:7.1f} ms"


async def run(rounds: int, root: Path) -> None:
    cluster = ControlPlane(root / "kube").start()
    minio = MinioServer(root / "minio").start()
    try:
        print(f"control plane started in {cluster.startup_s:.1f} s")
        admin = admin_client(cluster, root)
        ns, kubeconfig = agent_namespace(cluster, admin, root)
        s3 = S3Settings(endpoint=minio.endpoint, access_key=minio.access_key, secret_key=minio.secret_key,
                        bucket=f"b{uuid.uuid4().hex[:10]}")
        async with await MinioBlobStore.open(s3, max_blob_size=64 << 20, spool_dir=root) as store:
            cfg = settings(ns, kubeconfig, delay_ms=0)
            executor = KubernetesExecutor(cfg, store, store, store.packs)
            try:
                await executor.start()
                manifest = await snapshot(store)
                await executor.run(sandbox_job(manifest))  # warm-up: the pack is built once
                await asyncio.to_thread(baseline_round, admin, ns, manifests.job(
                    cfg, task_id=uuid.uuid4().hex[:16], attempt=1, tenant="t", memory_bytes=512 << 20,
                    wall_time_s=120))
                ours, base = [], []
                for _ in range(rounds):
                    job = sandbox_job(manifest)
                    t0 = time.perf_counter()
                    outcome = await executor.run(job)
                    ours.append(time.perf_counter() - t0)
                    assert outcome.exit_code == 0, outcome
                    body = manifests.job(cfg, task_id=uuid.uuid4().hex[:16], attempt=1, tenant="t",
                                         memory_bytes=512 << 20, wall_time_s=120)
                    base.append(await asyncio.to_thread(baseline_round, admin, ns, body))
            finally:
                await executor.close()
        print(f"{rounds} rounds, KWOK delay 0 ms")
        print(summary("baseline: create Job, watch pod", base))
        print(summary("KubernetesExecutor.run", ours))
        print(f"executor overhead at p50: {(statistics.median(ours) - statistics.median(base)) * 1000:.1f} ms")
    finally:
        minio.stop()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with scratch() as root:
        asyncio.run(run(args.rounds, root))


if __name__ == "__main__":
    main()
