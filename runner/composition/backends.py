"""The choice of adapters: the four stores a runner process works on, embedded or distributed.

`open_backends` opens them and returns `Backends`, which closes them in the right order. Embedded: one
SQLite state database (task store, event log, queue) and a filesystem CAS under `CODEX_SYS_HOME`.
Distributed: one NATS connection (JetStream queue, KV task store, event stream; streams and buckets
created idempotently at start) and a MinIO bucket (created with its lifecycle rules if missing).
The distributed clients are imported only when used, so an embedded runner starts without them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.adapters.embedded.db import open_state_db
from runner.adapters.embedded.fs_blob_store import FsBlobStore
from runner.adapters.embedded.sqlite_event_log import SqliteEventLog
from runner.adapters.embedded.sqlite_task_queue import SqliteTaskQueue
from runner.adapters.embedded.sqlite_task_store import SqliteTaskStore
from runner.config import HomeLayout
from runner.ports import BlobStore, EventLog, TaskQueue, TaskStore
from runner.snapshots.packs import Packs
from runner.worker.retrying_blobs import RetryingBlobStore

if TYPE_CHECKING:
    from runner.adapters.minio import S3Settings
    from runner.adapters.nats import JetStreamLimits, NatsSettings

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DistributedSettings:
    """Where the shared state of a distributed installation lives."""

    nats: NatsSettings
    s3: S3Settings
    jetstream: JetStreamLimits

    def describe(self) -> dict[str, str]:
        """What a log line may say about the deployment (no credentials)."""
        return {"nats": ",".join(self.nats.servers), "s3": self.s3.endpoint, "bucket": self.s3.bucket,
                "prefix": self.nats.prefix}


@dataclass
class Backends:
    store: TaskStore
    events: EventLog
    queue: TaskQueue
    blobs: BlobStore
    distributed: bool
    # Makes every delivery a crashed predecessor held visible again at once. Only the sole consumer of
    # an embedded state database may call it; a shared queue has no such owner.
    release_leases: Callable[[], Awaitable[int]] | None = None
    # Packed snapshots, where the store keeps them (MinIO): a worker fetches one object per task.
    packs: Packs | None = None
    _closers: list[Closer] = field(default_factory=list)

    @property
    def worker_blobs(self) -> BlobStore:
        """The blob store as a worker uses it. A shared store can be briefly down: the worker's writes
        ride that out instead of losing a task's outputs. The local store is never "down", and keeps its
        fast file copies unwrapped."""
        return RetryingBlobStore(self.blobs) if self.distributed else self.blobs

    async def close(self) -> None:
        """Close every store, last opened first; a failing close is logged and the others still run."""
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("closing a store failed")


async def open_backends(home: HomeLayout, distributed: DistributedSettings | None, *,
                        max_blob_bytes: int) -> Backends:
    closers: list[Closer] = []
    try:
        if distributed is None:
            return await _open_embedded(home, max_blob_bytes, closers)
        return await _open_distributed(distributed, max_blob_bytes, closers)
    except BaseException:
        for closer in reversed(closers):
            with contextlib.suppress(Exception):
                await closer()
        raise


async def _open_embedded(home: HomeLayout, max_blob_bytes: int, closers: list[Closer]) -> Backends:
    db = await open_state_db(home.state_db)
    closers.append(db.close)
    store, events, queue = SqliteTaskStore(db), SqliteEventLog(db), SqliteTaskQueue(db)
    closers += [store.close, events.close, queue.close]
    blobs = FsBlobStore(home.blobs, max_blob_bytes)
    closers.append(blobs.close)
    return Backends(store, events, queue, blobs, distributed=False, release_leases=queue.release_leases,
                    _closers=closers)


async def _open_distributed(settings: DistributedSettings, max_blob_bytes: int,
                            closers: list[Closer]) -> Backends:
    # Imported here: an embedded runner starts without loading the NATS and MinIO clients.
    from runner.adapters.minio import MinioBlobStore
    from runner.adapters.nats import open_nats_adapters

    nats = await open_nats_adapters(settings.nats, settings.jetstream)
    closers.append(nats.close)
    blobs = await MinioBlobStore.open(settings.s3, max_blob_size=max_blob_bytes)
    closers.append(blobs.close)
    log.info("distributed backends ready", extra=settings.describe())
    return Backends(nats.tasks, nats.events, nats.queue, blobs, distributed=True, packs=blobs.packs,
                    _closers=closers)
