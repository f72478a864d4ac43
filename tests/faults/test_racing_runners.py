"""Two runners (separate NATS connections, separate task services) racing to move the same task: exactly
one transition wins, the record and the event log agree on which, and the task has one result."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from runner.adapters.minio import S3Settings
from runner.adapters.nats import JetStreamLimits, NatsSettings
from runner.composition import DistributedSettings, ProtoManifestCodec, open_backends
from runner.config import HomeLayout
from runner.domain import models as m
from runner.tasks.service import TaskRequest, TaskService

pytestmark = pytest.mark.timeout(120)

ROUNDS = 25


def _settings(nats_server, minio_server, prefix: str) -> DistributedSettings:
    return DistributedSettings(
        nats=NatsSettings(servers=(nats_server.url,), prefix=prefix, name=f"race-{prefix}"),
        s3=S3Settings(endpoint=minio_server.endpoint, access_key=minio_server.access_key,
                      secret_key=minio_server.secret_key, bucket=f"race-{prefix}", secure=False),
        jetstream=JetStreamLimits())


async def test_two_runners_racing_to_end_a_task_exactly_one_wins(short_tmp, nats_server, minio_server):
    settings = _settings(nats_server, minio_server, f"race{secrets.token_hex(4)}")
    a = await open_backends(HomeLayout(short_tmp / "a"), settings, max_blob_bytes=1 << 20)
    b = await open_backends(HomeLayout(short_tmp / "b"), settings, max_blob_bytes=1 << 20)
    try:
        services = [TaskService(x.store, x.events, x.queue, x.blobs, ProtoManifestCodec(), "model") for x in (a, b)]
        manifest = m.Manifest(entries=())
        for _ in range(ROUNDS):
            task = await services[0].create("team", TaskRequest("race", "model", manifest=manifest))
            await services[0].transition(task.id, m.TaskState.PREPARING)
            ends = await asyncio.gather(
                services[0].finish(task.id, m.TaskState.COMPLETED, ""),
                services[1].finish(task.id, m.TaskState.CANCELLED, "cancelled by the user"))
            winners = [e for e in ends if e is not None]
            assert len(winners) == 1, ends
            stored = await services[1].store.get(task.id)
            assert stored.state is winners[0].state
            events = await services[1].events.read(task.id)
            results = [e.payload for e in events if isinstance(e.payload, m.TaskResult)]
            assert [r.state for r in results] == [stored.state]
            finals = [e.payload.state for e in events
                      if isinstance(e.payload, m.StateChanged) and e.payload.state.final]
            assert finals == [stored.state]
    finally:
        await a.close()
        await b.close()
