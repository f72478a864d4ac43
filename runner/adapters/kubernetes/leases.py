"""Worker liveness and orphans: a Lease per worker, and a sweep of Jobs whose worker is gone.

Each worker holds a Lease `worker-<id>` in the agent namespace and renews it every third of its
duration. A Job carries its worker's id (label); when that worker's Lease is missing or has not been
renewed for its duration, the worker is dead (its gateway session, hence its agent's only way out, died
with it), so its unfinished Jobs are orphans: the sweep deletes them (background propagation: the pod,
Secret and NetworkPolicy go with the Job). Finished Jobs are left to their TTL, for inspection.
A worker never sweeps its own Jobs: a restarted worker with the same id may still adopt them.
"""

from __future__ import annotations

import datetime as dt
import logging

from runner.adapters.kubernetes import manifests, names
from runner.adapters.kubernetes.api import KubeApi, Obj
from runner.adapters.kubernetes.settings import KubernetesSettings
from runner.domain.errors import AlreadyExists, NotFound

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _micro(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> dt.datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


def lease_expired(lease: Obj, now: dt.datetime) -> bool:
    spec = lease.get("spec") or {}
    renewed = _parse(str(spec.get("renewTime") or ""))
    duration = int(spec.get("leaseDurationSeconds") or 0)
    return renewed is None or renewed + dt.timedelta(seconds=duration) < now


def finished(job: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


class WorkerLease:
    def __init__(self, api: KubeApi, settings: KubernetesSettings) -> None:
        self._api, self._settings = api, settings
        self._name = names.worker_lease(settings.worker_id)

    async def renew(self) -> None:
        ns = self._settings.namespace
        coordination = self._api.coordination
        try:
            current = await self._api.call("reading the worker's Lease", coordination.read_namespaced_lease,
                                           self._name, ns)
        except NotFound:
            try:
                await self._api.call("creating the worker's Lease", coordination.create_namespaced_lease, ns,
                                     manifests.lease(self._settings, _micro(_now())))
                return
            except AlreadyExists:
                current = await self._api.call("reading the worker's Lease", coordination.read_namespaced_lease,
                                               self._name, ns)
        body = manifests.lease(self._settings, _micro(_now()), current["metadata"]["resourceVersion"])
        await self._api.call("renewing the worker's Lease", coordination.replace_namespaced_lease, self._name, ns,
                             body)


async def sweep_orphans(api: KubeApi, settings: KubernetesSettings) -> list[str]:
    """Delete the unfinished Jobs of dead workers; the names deleted."""
    ns = settings.namespace
    jobs = await api.call("listing agent Jobs", api.batch.list_namespaced_job, ns,
                          label_selector=names.AGENT_SELECTOR)
    leases = await api.call("listing worker Leases", api.coordination.list_namespaced_lease, ns,
                            label_selector=f"{names.MANAGED_BY}={names.MANAGER}")
    by_worker = {str((lease.get("metadata", {}).get("labels") or {}).get(names.WORKER)): lease
                 for lease in leases.get("items") or []}
    me = names.label_value(settings.worker_id)
    now = _now()
    deleted: list[str] = []
    for job in jobs.get("items") or []:
        worker = str((job["metadata"].get("labels") or {}).get(names.WORKER))
        if worker == me or finished(job) or job["metadata"].get("deletionTimestamp"):
            continue
        lease = by_worker.get(worker)
        if lease is not None and not lease_expired(lease, now):
            continue
        name = str(job["metadata"]["name"])
        try:
            await delete_job(api, ns, name)
        except NotFound:
            continue
        log.info("orphaned agent Job deleted", extra={"job": name, "worker": worker,
                                                       "lease": "expired" if lease else "missing"})
        deleted.append(name)
    return deleted


async def delete_job(api: KubeApi, namespace: str, name: str) -> None:
    """Delete a Job; its pod, Secret and NetworkPolicy follow (background propagation)."""
    await api.call(f"deleting Job {name}", api.batch.delete_namespaced_job, name, namespace,
                   body={"propagationPolicy": "Background"})
