"""TaskService: creating, reading, cancelling and finishing tasks, on top of the ports.

Every state change goes through `transition`, which checks the state machine of `runner.domain.models`,
writes the record with compare-and-set (retrying on `Conflict`), and appends the matching `StateChanged`
event, so the event stream and the record never disagree about what happened. A task's last event is
always its `TaskResult`.

Cancellation: a task still QUEUED is cancelled at once; a running one is flagged (`cancel_requested`) and
the worker running it is told through `CancelListener` (in process) or notices the flag when it polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from runner.domain import models as m
from runner.domain.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound
from runner.domain.paths import check_relative_path, check_symlink_targets, validate_manifest
from runner.ports import BlobStore, EventLog, QueuedTask, SignsLinks, TaskQueue, TaskStore
from runner.sources import checks as source_checks
from runner.sources.settings import SourceSettings
from runner.tasks.ids import check_task_id, new_task_id
from runner.tasks.quotas import Quotas


class ManifestCodec(Protocol):
    """How a manifest is stored as a blob (the gRPC adapter's `Manifest` message)."""

    def encode(self, manifest: m.Manifest) -> bytes: ...

    def decode(self, data: bytes) -> m.Manifest: ...

log = logging.getLogger(__name__)

CancelListener = Callable[[str], Awaitable[None]]

MAX_INSTRUCTION_CHARS = 100_000
DEFAULT_LINK_S = 3600
MAX_LINK_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
CHECKED_MANIFESTS = 1024


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    max_files: int = 100_000
    max_snapshot_bytes: int = 2 << 30
    max_limits: m.TaskLimits = field(default_factory=lambda: m.TaskLimits(
        wall_time_s=4 * 3600, max_steps=500, max_llm_requests=2000, max_llm_tokens=50_000_000,
        command_timeout_s=3600))
    default_limits: m.TaskLimits = field(default_factory=m.TaskLimits)


@dataclass(frozen=True, slots=True)
class TaskRequest:
    instruction: str
    model: str
    manifest_digest: m.Digest | None = None
    manifest: m.Manifest | None = None
    limits: m.TaskLimits | None = None  # fields at 0 mean "default"
    request_id: str = ""
    focus_paths: tuple[str, ...] = ()
    focus_range: str = ""
    # Instead of a manifest: a repository to clone (URL, ref) or an uploaded zip archive.
    git_url: str = ""
    git_ref: str = ""
    zip_digest: m.Digest | None = None
    # A snapshot's git HEAD, if the client knows it.
    base_commit: str = ""


def _clamp(requested: m.TaskLimits | None, default: m.TaskLimits, maximum: m.TaskLimits) -> m.TaskLimits:
    if requested is None:
        return default
    def pick(name: str) -> float:
        value = getattr(requested, name)
        if not value or value <= 0:
            return float(getattr(default, name))
        return float(min(value, getattr(maximum, name)))
    return replace(
        default,
        wall_time_s=pick("wall_time_s"),
        max_steps=int(pick("max_steps")),
        max_llm_requests=int(pick("max_llm_requests")),
        max_llm_tokens=int(pick("max_llm_tokens")),
        command_timeout_s=pick("command_timeout_s"),
    )


class TaskService:
    def __init__(self, store: TaskStore, events: EventLog, queue: TaskQueue, blobs: BlobStore,
                 manifest_codec: ManifestCodec, default_model: str,
                 limits: ServiceLimits | None = None, quotas: Quotas | None = None,
                 sources: SourceSettings | None = None) -> None:
        self.store = store
        self.events = events
        self.queue = queue
        self.blobs = blobs
        self._codec = manifest_codec
        self._default_model = default_model
        self._limits = limits or ServiceLimits()
        self._quotas = quotas
        self.sources = sources or SourceSettings()
        self._cancel_listeners: list[CancelListener] = []
        self._checked: dict[tuple[str, m.Digest], None] = {}  # insertion-ordered: oldest first

    def on_cancel(self, listener: CancelListener) -> None:
        self._cancel_listeners.append(listener)

    async def _admit(self, tenant: str, task_id: str, requested: m.TaskLimits | None) -> int:
        """The tenant's quotas (`runner.tasks.quotas`): raises `ResourceExhausted`, or returns the LLM
        token budget the new task may have."""
        budget = _clamp(requested, self._limits.default_limits, self._limits.max_limits).max_llm_tokens
        if self._quotas is None:
            return budget
        return await self._quotas.admit(tenant, task_id, budget)

    # ---- snapshots ------------------------------------------------------------------------------

    async def load_manifest(self, tenant: str, digest: m.Digest) -> m.Manifest:
        if digest.size > 256 << 20:
            raise InvalidArgument(f"manifest {digest} is larger than 256 MiB")
        try:
            data = await self.blobs.get_bytes(tenant, digest)
        except NotFound:
            raise FailedPrecondition(f"manifest blob {digest} has not been uploaded") from None
        return self._codec.decode(data)

    async def _check_snapshot(self, tenant: str, manifest: m.Manifest) -> None:
        validate_manifest(manifest, self._limits.max_files, self._limits.max_snapshot_bytes)
        missing = await self.blobs.find_missing(tenant, [e.digest for e in manifest.entries])
        if missing:
            by_digest = {e.digest: e.path for e in manifest.entries}
            names = ", ".join(repr(by_digest[d]) for d in missing[:5])
            raise FailedPrecondition(
                f"{len(missing)} blob(s) of the snapshot are not uploaded (for {names}"
                f"{', ...' if len(missing) > 5 else ''}); upload them, then create the task again")
        targets = {}
        for entry in manifest.entries:
            if entry.kind is m.FileKind.SYMLINK:
                targets[entry.path] = (await self.blobs.get_bytes(tenant, entry.digest)).decode("utf-8", "replace")
        check_symlink_targets(targets)

    # ---- create / read --------------------------------------------------------------------------

    async def create(self, tenant: str, req: TaskRequest) -> m.TaskRecord:
        instruction = req.instruction.strip()
        if not instruction:
            raise InvalidArgument("the instruction is empty; say what the agent should do")
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise InvalidArgument(f"the instruction has {len(instruction)} characters; the limit is "
                                  f"{MAX_INSTRUCTION_CHARS}")
        for path in req.focus_paths:
            check_relative_path(path, "focus path")
        if len(req.focus_range) > 4200:
            raise InvalidArgument("the focus range is longer than 4200 characters")
        task_id = new_task_id(tenant, req.request_id)
        if req.request_id:
            try:
                existing = await self.store.get(task_id)
            except NotFound:
                pass
            else:
                if existing.tenant == tenant:
                    return existing
        source = await self._check_source(tenant, req)
        llm_budget = await self._admit(tenant, task_id, req.limits)
        manifest_digest: m.Digest | None = None
        manifest: m.Manifest | None = None
        if source.kind is not m.SourceKind.SNAPSHOT:
            pass  # the worker fetches the source, then records its manifest
        elif req.manifest is not None:
            manifest = req.manifest
            manifest_digest = await self.put_manifest(tenant, manifest)
        elif req.manifest_digest is not None:
            manifest_digest = req.manifest_digest
        else:
            raise InvalidArgument("the task has no source: give a manifest, a manifest digest, a Git URL or a zip "
                                  "archive")
        # A manifest already checked for this tenant needs no second look: blobs are never removed
        # while the runner runs (a future garbage collector must clear this memo for what it removes).
        if manifest_digest is not None and (tenant, manifest_digest) not in self._checked:
            if manifest is None:
                manifest = await self.load_manifest(tenant, manifest_digest)
            await self._check_snapshot(tenant, manifest)
            self._checked[(tenant, manifest_digest)] = None
            while len(self._checked) > CHECKED_MANIFESTS:
                self._checked.pop(next(iter(self._checked)))
        limits = _clamp(req.limits, self._limits.default_limits, self._limits.max_limits)
        limits = replace(limits, max_llm_tokens=min(limits.max_llm_tokens, llm_budget))
        record = m.TaskRecord(id=task_id, tenant=tenant, instruction=instruction,
                              model=req.model or self._default_model, manifest_digest=manifest_digest,
                              limits=limits, focus_paths=req.focus_paths, focus_range=req.focus_range,
                              source=source)
        try:
            record = await self.store.create(record)
        except AlreadyExists:
            existing = await self.store.get(task_id)
            if existing.tenant != tenant:
                raise
            return existing
        await self.events.append(task_id, m.StateChanged(m.TaskState.QUEUED))
        await self.queue.enqueue(QueuedTask(task_id, tenant))
        log.info("task created", extra={"task_id": task_id, "tenant": tenant, "manifest": str(manifest_digest),
                                        "source": source.kind.value})
        return record

    async def _check_source(self, tenant: str, req: TaskRequest) -> m.TaskSource:
        """The task's source; a Git or zip source is checked now (`runner.sources.checks`), so what cannot
        work is refused before anything is queued."""
        given = [name for name, present in (
            ("a manifest", req.manifest is not None or req.manifest_digest is not None),
            ("a Git URL", bool(req.git_url)), ("a zip archive", req.zip_digest is not None)) if present]
        if len(given) > 1:
            raise InvalidArgument(f"the task has {' and '.join(given)}; give exactly one source")
        if len(req.base_commit) > 64:
            raise InvalidArgument("the base commit is longer than 64 characters")
        if req.git_url:
            url, target = await source_checks.check_git(req.git_url, req.git_ref, self.sources)
            log.info("git source checked", extra={"tenant": tenant, "url": url.redacted, "ref": target.label})
            return m.TaskSource(m.SourceKind.GIT, git_url=url.url, git_ref=req.git_ref.strip())
        if req.zip_digest is not None:
            await source_checks.check_zip(self.blobs, tenant, req.zip_digest, self.sources)
            return m.TaskSource(m.SourceKind.ZIP, zip_digest=req.zip_digest)
        return m.TaskSource(m.SourceKind.SNAPSHOT, base_commit=req.base_commit.strip())

    async def put_manifest(self, tenant: str, manifest: m.Manifest) -> m.Digest:
        """Store a manifest as a blob (a fetched Git or zip source's); its digest."""
        return await self.blobs.put_bytes(tenant, self._codec.encode(manifest))

    async def get(self, tenant: str, task_id: str) -> m.TaskRecord:
        check_task_id(task_id)
        try:
            record = await self.store.get(task_id)
        except NotFound:
            raise NotFound(f"no task {task_id}") from None
        if record.tenant != tenant:
            # Another tenant's task does not exist as far as this caller can tell.
            raise NotFound(f"no task {task_id}")
        return record

    async def list(self, tenant: str, limit: int, states: Sequence[m.TaskState]) -> list[m.TaskRecord]:
        return await self.store.list(tenant, limit=max(1, min(limit or 50, 1000)), states=states)

    async def watch(self, tenant: str, task_id: str, after_seq: int) -> AsyncIterator[m.Event]:
        await self.get(tenant, task_id)
        if after_seq < 0:
            raise InvalidArgument(f"after_seq {after_seq} is negative")
        async for event in self.events.watch(task_id, after_seq):
            yield event

    async def artifact(self, tenant: str, task_id: str, name: str) -> tuple[m.ArtifactRef, AsyncIterator[bytes]]:
        ref = await self._artifact_ref(tenant, task_id, name)
        return ref, self.blobs.read(tenant, ref.digest)

    async def _artifact_ref(self, tenant: str, task_id: str, name: str) -> m.ArtifactRef:
        record = await self.get(tenant, task_id)
        if name not in m.ARTIFACT_NAMES:
            raise InvalidArgument(f"{name[:80]!r} is not an artifact name; known: {', '.join(m.ARTIFACT_NAMES)}")
        ref = record.artifact(name)
        if ref is None:
            if record.state.final:
                raise NotFound(f"task {task_id} has no {name}")
            raise FailedPrecondition(f"task {task_id} is {record.state.value}; its artifacts exist once it ends")
        return ref

    async def artifact_link(self, tenant: str, task_id: str, name: str, expires_s: int) -> tuple[str, float]:
        """A link that downloads one artifact without a token until it expires: (url, expires_at)."""
        if expires_s < 0 or expires_s > MAX_LINK_S:
            raise InvalidArgument(f"a link can last from 1 s to {MAX_LINK_S} s (7 days), not {expires_s} s")
        expires_s = expires_s or DEFAULT_LINK_S
        ref = await self._artifact_ref(tenant, task_id, name)
        if not isinstance(self.blobs, SignsLinks):
            raise FailedPrecondition(
                "this runner keeps blobs on its own disk and cannot sign links; download the artifact with "
                "`codex-sys artifacts` instead, or run the runner on MinIO (docs/scale-out.md)")
        url = self.blobs.download_url(tenant, ref.digest, f"{task_id}-{name}", expires_s)
        return url, time.time() + expires_s

    # ---- state changes ----------------------------------------------------------------------------

    async def transition(self, task_id: str, state: m.TaskState, reason: str = "",
                         update: Callable[[m.TaskRecord], m.TaskRecord] | None = None,
                         if_from: Sequence[m.TaskState] = (), if_attempt: int | None = None) -> m.TaskRecord | None:
        """Move a task to `state`; None when the move is not allowed from its current state (e.g. it
        was cancelled meanwhile), or, with `if_attempt`, when the task is no longer at that attempt (a
        later delivery took it over). Retries compare-and-set conflicts."""
        for _ in range(50):
            record = await self.store.get(task_id)
            if if_from and record.state not in if_from:
                return None
            if if_attempt is not None and record.attempt != if_attempt:
                return None
            if record.state != state and not m.can_transition(record.state, state):
                return None
            if record.state == state and not reason and update is None:
                return record  # already there (the agent reported the phase itself): nothing to write
            new = record.with_state(state, reason) if record.state != state or reason else record
            if update is not None:
                new = update(new)
            try:
                stored = await self.store.update(new)
            except Conflict:
                await asyncio.sleep(0)
                continue
            if record.state != state:
                await self.events.append(task_id, m.StateChanged(state, reason))
            return stored
        raise Conflict(f"task {task_id}: too many concurrent updates")

    async def finish(self, task_id: str, state: m.TaskState, reason: str,
                     update: Callable[[m.TaskRecord], m.TaskRecord] | None = None,
                     if_from: Sequence[m.TaskState] = (), if_attempt: int | None = None) -> m.TaskRecord | None:
        """Move a task to a final state and append its result event, once."""
        if not state.final:
            raise ValueError(f"{state} is not a final state")
        stored = await self.transition(task_id, state, reason, update, if_from, if_attempt)
        if stored is None or stored.state is not state:
            return None
        await self.events.append(task_id, m.TaskResult(state, reason, stored.files_changed,
                                                        tuple(a.name for a in stored.artifacts)))
        log.info("task finished", extra={"task_id": task_id, "state": state.value, "reason": reason})
        return stored

    async def cancel(self, tenant: str, task_id: str) -> m.TaskRecord:
        record = await self.get(tenant, task_id)
        if record.state.final:
            raise FailedPrecondition(f"task {task_id} already ended ({record.state.value}); nothing to cancel")
        if record.state is m.TaskState.QUEUED:
            done = await self.finish(task_id, m.TaskState.CANCELLED, "cancelled by the user",
                                     if_from=(m.TaskState.QUEUED,))
            if done is not None:
                return done
        # Running (or just picked up): flag it; the worker kills the sandbox and ends the task.
        for _ in range(50):
            current = await self.store.get(task_id)
            if current.state.final:
                return current
            try:
                flagged = await self.store.update(replace(current, cancel_requested=True))
                break
            except Conflict:
                await asyncio.sleep(0)
        else:
            raise Conflict(f"task {task_id}: too many concurrent updates")
        for listener in self._cancel_listeners:
            await listener(task_id)
        return flagged

