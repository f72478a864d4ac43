"""A task whose every delivery was lost ends FAILED with a reason, instead of staying unreported."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runner.adapters.embedded.db import open_state_db
from runner.adapters.embedded.fs_blob_store import FsBlobStore
from runner.adapters.embedded.sqlite_event_log import SqliteEventLog
from runner.adapters.embedded.sqlite_task_queue import SqliteTaskQueue
from runner.adapters.embedded.sqlite_task_store import SqliteTaskStore
from runner.composition import ProtoManifestCodec
from runner.domain import models as m
from runner.tasks.service import TaskRequest, TaskService
from runner.worker.exhausted import fail_exhausted

pytestmark = pytest.mark.timeout(30)


async def test_a_task_delivered_max_deliver_times_without_an_ack_fails_with_a_reason(tmp_path: Path):
    db = await open_state_db(tmp_path / "state.db")
    queue = SqliteTaskQueue(db, ack_wait_s=0.2, max_deliver=2)
    blobs = FsBlobStore(tmp_path / "blobs", 1 << 20)
    service = TaskService(SqliteTaskStore(db), SqliteEventLog(db), queue, blobs, ProtoManifestCodec(), "model")
    try:
        digest = await blobs.put_bytes("local", b"content")
        manifest = m.Manifest((m.ManifestEntry("a.txt", m.FileKind.FILE, digest),))
        task = await service.create("local", TaskRequest("work", "", manifest=manifest))
        for attempt in (1, 2):  # two workers take it and die without a word
            delivery = await queue.receive(timeout_s=5)
            assert delivery is not None and delivery.attempt == attempt
            await asyncio.sleep(0.3)
        assert await queue.receive(timeout_s=0.5) is None

        assert await fail_exhausted(service, queue) == 1
        record = await service.get("local", task.id)
        assert record.state is m.TaskState.FAILED
        assert "started 2 times" in record.reason
        events = await service.events.read(task.id)
        assert isinstance(events[-1].payload, m.TaskResult)
        assert await fail_exhausted(service, queue) == 0
    finally:
        await blobs.close()
        await db.close()
