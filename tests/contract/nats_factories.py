"""Factories of the NATS JetStream adapters for the contract suites (see `conftest`).

Each adapter comes from `open_nats_adapters` on the session's nats-server, with the test's unique
namespace as prefix, so every test has its own streams, consumer and bucket; they are deleted again when
the test ends, and the server stays small over a long session.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors

from runner.adapters.nats import JetStreamLimits, NatsAdapters, NatsSettings, open_nats_adapters
from runner.ports import EventLog, TaskQueue, TaskStore

if TYPE_CHECKING:
    from .conftest import AdapterEnv


@asynccontextmanager
async def nats_adapters(env: AdapterEnv, limits: JetStreamLimits | None = None) -> AsyncIterator[NatsAdapters]:
    server = env.request.getfixturevalue("nats_server")
    settings = NatsSettings(servers=(server.url,), prefix=env.namespace, name=env.request.node.name[:60])
    async with await open_nats_adapters(settings, limits or JetStreamLimits()) as adapters:
        try:
            yield adapters
        finally:
            await delete_layout(adapters)


async def delete_layout(adapters: NatsAdapters) -> None:
    layout, js = adapters.layout, adapters.connection.js
    for stream in (layout.queue_stream, layout.advisories_stream, layout.tasks_stream, layout.events_stream):
        with contextlib.suppress(nats.js.errors.NotFoundError, nats.errors.Error):
            await js.delete_stream(stream)


@asynccontextmanager
async def jetstream_kv_task_store(env: AdapterEnv) -> AsyncIterator[TaskStore]:
    async with nats_adapters(env) as adapters:
        yield adapters.tasks


@asynccontextmanager
async def jetstream_event_log(env: AdapterEnv) -> AsyncIterator[EventLog]:
    async with nats_adapters(env) as adapters:
        yield adapters.events


@asynccontextmanager
async def jetstream_task_queue(env: AdapterEnv, *, ack_wait_s: float, max_deliver: int) -> AsyncIterator[TaskQueue]:
    async with nats_adapters(env, JetStreamLimits(ack_wait_s=ack_wait_s, max_deliver=max_deliver)) as adapters:
        yield adapters.queue


BLOB_STORES: list[Any] = []
TASK_STORES: list[Any] = [jetstream_kv_task_store]
EVENT_LOGS: list[Any] = [jetstream_event_log]
TASK_QUEUES: list[Any] = [jetstream_task_queue]
