"""The distributed adapters of the state ports, on NATS JetStream (nats-server 2.9 or later).

`KvTaskStore` (`TaskStore`) keeps task records in a KV bucket, `JetStreamEventLog` (`EventLog`) keeps
every task's events on its own subject of one stream, and `JetStreamTaskQueue` (`TaskQueue`) is a
work-queue stream with one durable pull consumer shared by all workers. All three share one
`NatsConnection`. `open_nats_adapters` connects, creates or updates the streams, consumer and bucket
(`ensure_layout`) and returns them together; closing it closes the adapters, then the connection:

    async with await open_nats_adapters(settings, limits) as nats:
        service = TaskService(nats.tasks, nats.events, nats.queue, ...)

docs/nats.md describes the layout, the limits and how each guarantee of the ports is met.
"""

from __future__ import annotations

import logging

from runner.adapters.nats.connection import NatsConnection
from runner.adapters.nats.event_log import JetStreamEventLog
from runner.adapters.nats.layout import Layout, ensure_layout
from runner.adapters.nats.retry import retrying
from runner.adapters.nats.settings import JetStreamLimits, NatsSettings
from runner.adapters.nats.task_queue import JetStreamDelivery, JetStreamTaskQueue
from runner.adapters.nats.task_store import KvTaskStore
from runner.closing import AsyncClosing

log = logging.getLogger(__name__)

__all__ = [
    "JetStreamDelivery",
    "JetStreamEventLog",
    "JetStreamLimits",
    "JetStreamTaskQueue",
    "KvTaskStore",
    "Layout",
    "NatsAdapters",
    "NatsConnection",
    "NatsSettings",
    "ensure_layout",
    "open_nats_adapters",
]


class NatsAdapters(AsyncClosing):
    """The three NATS adapters on one connection. Build with `open_nats_adapters`."""

    def __init__(self, connection: NatsConnection, layout: Layout) -> None:
        self.connection = connection
        self.layout = layout
        self.tasks = KvTaskStore(connection, layout)
        self.events = JetStreamEventLog(connection, layout)
        self.queue = JetStreamTaskQueue(connection, layout)

    async def close(self) -> None:
        """Close the adapters (waiting receivers and watchers raise `Unavailable`), then the connection."""
        for adapter in (self.queue, self.events, self.tasks):
            try:
                await adapter.close()
            except Exception:
                log.exception("closing a NATS adapter failed", extra={"adapter": type(adapter).__name__})
        await self.connection.close()


async def open_nats_adapters(settings: NatsSettings, limits: JetStreamLimits | None = None) -> NatsAdapters:
    """Connect (raises `Unavailable` if NATS cannot be reached within `settings.connect_timeout_s`), make
    sure the streams, consumer and bucket of `settings.prefix` exist with `limits`, and return the adapters."""
    connection = await NatsConnection.connect(settings)
    try:
        layout = await retrying(connection, "set up the JetStream streams, consumer and bucket",
                                lambda: ensure_layout(connection.js, settings.prefix, limits or JetStreamLimits()))
    except BaseException:
        await connection.close()
        raise
    return NatsAdapters(connection, layout)
