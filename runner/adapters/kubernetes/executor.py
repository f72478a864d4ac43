"""`KubernetesExecutor`: each task attempt in its own pod, as a Job in the agent namespace.

A run, end to end:

1. the Jobs of the task's earlier attempts are deleted (their workers lost the task; a pod without its
   worker's gateway session cannot finish);
2. the snapshot's pack is built once (`Packs.ensure`) and presigned for one GET; presigned PUT URLs
   are made for each output under the attempt's staging prefix. The pod gets no storage credentials;
3. the Job `task-<id>-<attempt>` is created, then its Secret (the agent's spec with the per-task
   gateway token, and the URLs) and NetworkPolicy, both owned by the Job. When the Job already exists
   (a retried call, a restarted worker on the same attempt) it is adopted, not duplicated;
4. the shared watches report the Job and its Pod; each stage goes to the task's log (`SandboxJob.notes`);
   an image that cannot be pulled ends the task at once (Kubernetes would retry until the deadline);
5. when the pod has ended, the outputs are read back from staging, checked (names and sizes) and
   stored in the BlobStore; the staged copies are removed. Finished Jobs stay until their TTL.

Cancelling `run` deletes the Job (background propagation) before the cancellation propagates. The
task's wall time is the Job's `activeDeadlineSeconds` (plus slack for pulling and fetching); a Job
that passes it ends TIMED_OUT.

`start` begins the watches, the worker's Lease and the orphan sweep (`leases`). All client calls run on
the adapter's own threads (`api`); watches run on theirs (`watches`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Protocol, runtime_checkable

from agent.pod_transfer import UPLOAD_NAMES, PackLink, Transfer
from agent.wire import RESULT_FILE, AgentTaskSpec
from runner.adapters.kubernetes import leases, manifests, names
from runner.adapters.kubernetes.api import KubeApi, load_configuration
from runner.adapters.kubernetes.settings import KubernetesSettings
from runner.adapters.kubernetes.status import Status, read_status
from runner.adapters.kubernetes.watches import ObjectWatch, Tracker, start_watches
from runner.domain.errors import AlreadyExists, CodexError, FailedPrecondition, NotFound, Unavailable
from runner.domain.models import ArtifactRef
from runner.ports import BlobStore, SandboxJob, SandboxOutcome
from runner.snapshots.packs import Packs

log = logging.getLogger(__name__)

POD_OUTPUTS = UPLOAD_NAMES  # what a pod may upload: the agent's outputs and its log
LINK_SLACK_S = 600  # presigned URLs outlive the Job's deadline by this much
MAX_OUTPUT_BYTES = 64 << 20
MAX_RESULT_BYTES = 1 << 20
JOB_SETTLE_S = 5.0


@runtime_checkable
class Transfers(Protocol):
    """Presigned links for credential-less pods (the MinIO blob store has them)."""

    def pack_url(self, tenant: str, pack: str, expires_s: int) -> str: ...

    def upload_url(self, key: str, expires_s: int) -> str: ...

    def read_staged(self, key: str, chunk_size: int = ...) -> AsyncIterator[bytes]: ...

    async def delete_staged(self, key: str) -> None: ...


class KubernetesExecutor:
    def __init__(self, settings: KubernetesSettings, blobs: BlobStore, transfers: Transfers, packs: Packs,
                 *, api: KubeApi | None = None) -> None:
        self._settings = settings
        self._blobs, self._transfers, self._packs = blobs, transfers, packs
        self._api = api
        self._tracker = Tracker()
        self._watches: tuple[ObjectWatch, ObjectWatch] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        self._start_lock = asyncio.Lock()

    @property
    def relists(self) -> int:
        """How often a watch had to list again (after 410 Gone): for tests and metrics."""
        return sum(w.relists for w in self._watches or ())

    async def start(self) -> None:
        async with self._start_lock:
            if self._closed:
                raise FailedPrecondition("the Kubernetes executor is closed")
            if self._started:
                return
            if self._api is None:
                self._api = KubeApi(await asyncio.to_thread(load_configuration, self._settings.kubeconfig))
            lease = leases.WorkerLease(self._api, self._settings)
            await lease.renew()  # fails early on a missing permission or an unreachable API server
            loop = asyncio.get_running_loop()
            self._watches = start_watches(self._api, self._settings.namespace, names.AGENT_SELECTOR,
                                          self._tracker, loop, self._settings.watch_timeout_s)
            await asyncio.gather(*(asyncio.to_thread(w.listed.wait, 30) for w in self._watches))
            self._background = [
                asyncio.create_task(self._every(self._settings.lease_duration_s / 3, lease.renew, "lease renewal"),
                                    name="k8s-lease"),
                asyncio.create_task(self._every(self._settings.sweep_interval_s, self.sweep, "orphan sweep",
                                                at_once=True), name="k8s-sweep"),
            ]
            self._started = True
            log.info("Kubernetes executor started", extra={
                "namespace": self._settings.namespace, "worker": self._settings.worker_id,
                "agent_image": self._settings.agent_image})

    async def sweep(self) -> None:
        assert self._api is not None
        await leases.sweep_orphans(self._api, self._settings)

    async def _every(self, interval_s: float, fn: Callable[[], Awaitable[object]], what: str,
                     at_once: bool = False) -> None:
        if not at_once:
            await asyncio.sleep(interval_s)
        while True:
            try:
                await fn()
            except Exception as exc:
                log.warning(f"{what} failed", extra={"error": str(exc)[:300]})
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._watches is not None:
            await asyncio.gather(*(asyncio.to_thread(w.stop) for w in self._watches))
        if self._api is not None:
            self._api.close()

    # ---- a run ----------------------------------------------------------------------------------

    async def run(self, job: SandboxJob) -> SandboxOutcome:
        await self.start()
        task, attempt = job.task, job.attempt
        name = names.job_name(task.id, attempt)
        ctx = {"task_id": task.id, "attempt": attempt, "job": name}
        t0 = time.monotonic()
        self._tracker.changed(name)  # events from now on wake this run
        created = False
        try:
            await self._delete_earlier_attempts(task.id, attempt)
            adopted = await self._create_or_adopt(job, name)
            created = True
            await _note(job, f"agent pod: Job {name} {'adopted' if adopted else 'created'} in namespace "
                             f"{self._settings.namespace}")
            log.info("agent Job " + ("adopted" if adopted else "created"), extra=ctx)
            status = await self._follow(job, name)
            if status.fatal:
                await self._delete(name)
                raise FailedPrecondition(status.fatal)
            outcome = await self._collect(job, status)
            log.info("agent pod finished", extra={**ctx, "exit_code": outcome.exit_code,
                                                  "timed_out": outcome.timed_out, "detail": outcome.detail,
                                                  "duration_s": round(time.monotonic() - t0, 3)})
            return outcome
        except asyncio.CancelledError:
            if created:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._delete(name))
                log.info("agent Job deleted: the run was cancelled", extra=ctx)
            raise
        finally:
            self._tracker.forget(name)

    async def _delete(self, name: str) -> None:
        assert self._api is not None
        with contextlib.suppress(NotFound):
            await leases.delete_job(self._api, self._settings.namespace, name)

    async def _delete_earlier_attempts(self, task_id: str, attempt: int) -> None:
        for name, obj in list(self._tracker.jobs.items()):
            labels = obj["metadata"].get("labels") or {}
            if labels.get(names.TASK) == names.label_value(task_id) and int(labels.get(names.ATTEMPT, 0)) < attempt:
                log.info("deleting the Job of an earlier attempt", extra={"task_id": task_id, "job": name})
                await self._delete(name)

    async def _create_or_adopt(self, job: SandboxJob, name: str) -> bool:
        assert self._api is not None
        s, task = self._settings, job.task
        body = manifests.job(s, task_id=task.id, attempt=job.attempt, tenant=task.tenant,
                             memory_bytes=task.limits.memory_bytes, wall_time_s=task.limits.wall_time_s)
        adopted = False
        try:
            job_obj = await self._api.call(f"creating Job {name}", self._api.batch.create_namespaced_job,
                                           s.namespace, body)
        except AlreadyExists:
            job_obj = await self._api.call(f"reading Job {name}", self._api.batch.read_namespaced_job, name,
                                           s.namespace)
            labels = job_obj["metadata"].get("labels") or {}
            mine = names.labels(task.id, job.attempt, task.tenant, s.worker_id)
            if any(labels.get(k) != mine[k] for k in (names.TASK, names.ATTEMPT, names.TENANT)):
                raise FailedPrecondition(f"Job {name} in namespace {s.namespace} exists but is not this task's "
                                         "attempt; delete it") from None
            adopted = True
        secret = manifests.secret(s, job_obj, spec_json=self._pod_spec(job), transfer_json=await self._transfer(job))
        policy = manifests.network_policy(s, job_obj)
        for what, fn, obj in (("Secret", self._api.core.create_namespaced_secret, secret),
                              ("NetworkPolicy", self._api.networking.create_namespaced_network_policy, policy)):
            with contextlib.suppress(AlreadyExists):  # adopted: made the first time
                await self._api.call(f"creating {what} {name}", fn, s.namespace, obj)
        return adopted

    def _pod_spec(self, job: SandboxJob) -> bytes:
        spec = AgentTaskSpec.from_json(job.agent_spec_json)
        return replace(spec, gateway_url=self._settings.gateway_url).to_json()

    async def _transfer(self, job: SandboxJob) -> bytes:
        """The pod's transfer.json (`agent.pod_transfer`): the pack's GET link and one PUT link per output."""
        task = job.task
        pack = await self._packs.ensure(task.tenant, job.manifest)
        expires = int(task.limits.wall_time_s) + self._settings.deadline_slack_s + LINK_SLACK_S
        prefix = names.staging_prefix(task.tenant, task.id, job.attempt)
        return Transfer(
            pack=PackLink(self._transfers.pack_url(task.tenant, pack.key, expires), pack.digest.hash,
                          pack.digest.size),
            outputs={n: self._transfers.upload_url(f"{prefix}/{n}", expires) for n in POD_OUTPUTS}).to_json()

    async def _follow(self, job: SandboxJob, name: str) -> Status:
        """Wait until the pod has ended (or cannot start); note each new stage in the task's log."""
        changed = self._tracker.changed(name)
        last_note = ""
        settle_until: float | None = None
        # The Job's own deadline ends the pod; this one only guards against a lost watch.
        give_up = time.monotonic() + job.task.limits.wall_time_s + self._settings.deadline_slack_s + 60
        while True:
            changed.clear()
            if name in self._tracker.deleted_jobs:
                raise FailedPrecondition(f"the task's Job {name} was deleted outside codex-sys")
            status = read_status(self._tracker.jobs.get(name), self._tracker.pods.get(name))
            if status.note != last_note:
                last_note = status.note
                await _note(job, f"agent pod: {status.note}")
            if status.fatal:
                return status
            if status.stage == "finished":
                # The Job controller says why a pod failed (its deadline: TIMED_OUT) a moment after the pod
                # ended; wait briefly for that word before going by the pod alone. An agent that exited
                # 0 needs no verdict.
                job_obj = self._tracker.jobs.get(name)
                if status.exit_code == 0 or status.timed_out or job_obj is None or leases.finished(job_obj):
                    return status
                if settle_until is None:
                    settle_until = time.monotonic() + JOB_SETTLE_S
                elif time.monotonic() >= settle_until:
                    return status
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                await self._delete(name)
                return Status("finished", "no word from Kubernetes", timed_out=True,
                              detail="the pod gave no sign of ending before its deadline; its Job was deleted")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, 30.0 if settle_until is None else 0.5))

    async def _collect(self, job: SandboxJob, status: Status) -> SandboxOutcome:
        task = job.task
        prefix = names.staging_prefix(task.tenant, task.id, job.attempt)
        artifacts: list[ArtifactRef] = []
        result_json: bytes | None = None
        notes = [status.detail] if status.detail else []
        for name in POD_OUTPUTS:
            limit = MAX_RESULT_BYTES if name == RESULT_FILE else MAX_OUTPUT_BYTES
            try:
                data = await _read_limited(self._transfers.read_staged(f"{prefix}/{name}"), limit)
            except NotFound:
                continue
            except _TooLarge:
                notes.append(f"{name} is over {limit} bytes and was left out")
                continue
            finally:
                with contextlib.suppress(CodexError):
                    await self._transfers.delete_staged(f"{prefix}/{name}")
            if name == RESULT_FILE:
                result_json = data
            else:
                artifacts.append(ArtifactRef(name, await self._blobs.put_bytes(task.tenant, data)))
        return SandboxOutcome(exit_code=status.exit_code, timed_out=status.timed_out, artifacts=tuple(artifacts),
                              result_json=result_json, detail="; ".join(notes))


class _TooLarge(Exception):
    pass


async def _read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            parts.append(chunk)
    finally:
        aclose = getattr(chunks, "aclose", None)  # an async generator: release its connection now
        if aclose is not None:
            await aclose()
    return b"".join(parts)


async def _note(job: SandboxJob, text: str) -> None:
    if job.notes is None:
        return
    try:
        await job.notes(text)
    except Unavailable as exc:  # the log is best effort; the run goes on
        log.warning("could not add a note to the task's log", extra={"task_id": job.task.id, "error": str(exc)})
