"""The ports: one `Protocol` per boundary of the runner.

Each port has an embedded adapter (SQLite / local filesystem / bubblewrap: zero infrastructure) and a
distributed one (NATS JetStream / MinIO / Kubernetes). Adapters are chosen in `runner.composition` and
nowhere else; one contract suite in `tests/contract/` runs against every adapter of a port.

All methods are async. Errors are the classes of `runner.domain.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from runner.domain.models import ArtifactRef, Digest, Event, EventPayload, Manifest, TaskRecord, TaskState


class BlobWriter(Protocol):
    """One blob being written. Nothing is visible to readers before `commit` succeeds."""

    async def write(self, data: bytes) -> None:
        """Append bytes; raises `InvalidArgument` once more bytes arrive than the digest's size."""

    async def commit(self) -> None:
        """Verify size and SHA-256 against the digest and publish atomically.

        Raises `InvalidArgument` naming the digest on mismatch; the partial data is discarded and any
        blob already stored under that digest is untouched.
        """

    async def abort(self) -> None:
        """Discard what was written. Safe to call after commit (no-op)."""


class BlobStore(Protocol):
    """Content-addressed storage, namespaced per tenant: a tenant never reads another's blobs."""

    max_blob_size: int

    async def find_missing(self, tenant: str, digests: Sequence[Digest]) -> list[Digest]:
        """The subset of `digests` not stored for this tenant, in the order given, without duplicates."""

    async def writer(self, tenant: str, digest: Digest) -> BlobWriter:
        """Start writing a blob. Raises `ResourceExhausted` when `digest.size` exceeds `max_blob_size`."""

    async def put_bytes(self, tenant: str, data: bytes) -> Digest:
        """Store small in-memory data; returns its digest."""

    async def put_many(self, tenant: str, items: Sequence[tuple[Digest, bytes]]) -> None:
        """Store complete small blobs in one go (an upload's small files arrive many to a message).

        Every item is verified first: on a mismatch, `InvalidArgument` names the digest and none of the
        items is stored. `ResourceExhausted` for an item over `max_blob_size`."""

    def read(self, tenant: str, digest: Digest, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream a blob's bytes (an async generator). Raises `NotFound` on first iteration. Data is
        verified as it is read; a blob whose bytes no longer match its digest raises `Unavailable` at
        the end rather than passing silently."""

    async def get_bytes(self, tenant: str, digest: Digest) -> bytes:
        """Read a whole (small) blob into memory, verified. Raises `NotFound`."""


@runtime_checkable
class SignsLinks(Protocol):
    """A blob store that can hand out links which download a blob without credentials (presigned URLs)."""

    def download_url(self, tenant: str, digest: Digest, filename: str, expires_s: int) -> str:
        """A URL that serves the blob as `filename` until `expires_s` seconds from now."""
        ...


class TaskStore(Protocol):
    """Task records with compare-and-set updates, so two writers never lose an update."""

    async def create(self, record: TaskRecord) -> TaskRecord:
        """Store a new record (revision becomes 1). Raises `AlreadyExists`."""

    async def get(self, task_id: str) -> TaskRecord:
        """Raises `NotFound`."""

    async def update(self, record: TaskRecord) -> TaskRecord:
        """Replace the record if the stored revision still equals `record.revision`; returns the new
        record with its new revision. Raises `Conflict` otherwise, `NotFound` if it does not exist."""

    async def list(self, tenant: str, limit: int = 50, states: Sequence[TaskState] = ()) -> list[TaskRecord]:
        """The tenant's tasks, newest first."""

    async def list_created_since(self, tenant: str, since: float) -> Sequence[TaskRecord]:
        """Every task of the tenant created at or after `since` (Unix time), oldest first (quotas)."""


class EventLog(Protocol):
    """Per-task append-only event sequences, numbered from 1 without gaps."""

    async def append(self, task_id: str, payload: EventPayload) -> Event:
        """Append and return the event with its sequence number. Appends for one task are serialised."""

    async def read(self, task_id: str, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        """Stored events with seq > after_seq, in order."""

    def watch(self, task_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Replay events after `after_seq`, then follow live. Ends after yielding a `TaskResult` event.

        Each event is yielded exactly once, in sequence order, with no gap.
        """


@dataclass(frozen=True, slots=True)
class QueuedTask:
    task_id: str
    tenant: str


class Delivery(Protocol):
    """One delivery of a queued task to a worker."""

    @property
    def task(self) -> QueuedTask: ...

    @property
    def attempt(self) -> int:
        """1 for the first delivery, 2 after a redelivery..."""

    async def in_progress(self) -> None:
        """Heartbeat: the worker is still on it; extend the redelivery deadline."""

    async def ack(self) -> None:
        """Done (whatever the task's outcome): never deliver again."""

    async def nak(self, delay_s: float) -> None:
        """Could not process now: deliver again after `delay_s`."""

    async def term(self) -> None:
        """Permanent failure, already recorded on the task: never deliver again."""


@dataclass(frozen=True, slots=True)
class ExhaustedTask:
    """A queued task that used up its `max_deliver` deliveries without an ack (each worker died)."""

    task: QueuedTask
    attempts: int
    exhausted_at: float  # when the queue gave up on it (Unix time)


class TaskQueue(Protocol):
    async def enqueue(self, task: QueuedTask) -> None:
        """Idempotent by task id: enqueuing the same task twice queues it once."""

    async def receive(self, timeout_s: float | None = None) -> Delivery | None:
        """The next delivery, or None once `timeout_s` has passed with nothing to deliver."""

    async def exhausted(self, limit: int = 100) -> list[ExhaustedTask]:
        """Tasks the queue will not deliver again because their `max_deliver`-th delivery ended without an
        ack, oldest first. A task is listed some time after that delivery's deadline (a queue may notice
        only when it is next asked for work) and until `discard`. The runner fails each with a reason,
        then discards it (`runner.worker.exhausted`)."""

    async def discard(self, task_id: str) -> bool:
        """Forget an exhausted task; False if no exhausted task has that id."""


@dataclass(frozen=True, slots=True)
class SandboxJob:
    """What an executor needs to run one attempt of a task."""

    task: TaskRecord
    attempt: int
    # The snapshot, already decoded and validated (paths canonical, symlink targets inside).
    manifest: Manifest
    # The agent's task specification (agent.wire.AgentTaskSpec) as JSON, token included.
    agent_spec_json: bytes
    # Where an executor reports its progress for the task's log (an executor whose sandboxes take a
    # while to start, a pod being scheduled, says where it is); None: nobody listens.
    notes: Callable[[str], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class SandboxOutcome:
    exit_code: int | None  # None when killed by a signal
    timed_out: bool
    # Outputs the sandbox produced, validated and already stored in the BlobStore.
    artifacts: tuple[ArtifactRef, ...]
    # The agent's own verdict (agent.wire.AgentResult JSON), if it wrote one.
    result_json: bytes | None
    detail: str = ""  # a person-readable note on how the sandbox ended (signal, OOM, limits)


class Executor(Protocol):
    """Runs one task attempt in an isolated sandbox.

    The executor brings the snapshot into the sandbox (`/workspace`), runs the agent with the spec,
    collects `/output` into the BlobStore, and returns. Cancelling the awaiting asyncio task kills the
    whole sandbox (within 2 s) before the cancellation propagates.
    """

    async def run(self, job: SandboxJob) -> SandboxOutcome: ...

    async def close(self) -> None: ...
