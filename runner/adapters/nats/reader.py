"""`StreamReader`: reads the messages of one subject filter of a stream, in order, through an ephemeral
push consumer, and says so when it can no longer vouch for that order.

The consumer is JetStream's "ordered consumer" done by hand (nats-py's own recreates itself in an
unreferenced background task and reports trouble only to the connection's error callback, which a
reader cannot wait on): no acks, in memory, one replica, flow control, idle heartbeats. The reader
checks every message's consumer sequence against the last one plus one, and every heartbeat's
`Nats-Last-Consumer` against the last message it took. A gap, a heartbeat that does not come within
three intervals, a status from the server (consumer deleted) or a disconnect of the connection all
raise `StreamInterrupted`; the caller then opens a new reader after the last stream sequence it
processed, so nothing is skipped and nothing is taken twice. `StreamInterrupted` counts as a transient
error for `retry.retrying`.

The server pushes as soon as a message is stored, so following a stream costs no polling: a reader
waiting in `next()` is woken by the message itself. Flow-control requests are answered when the reader
reaches them, which holds the server back when the reader falls behind.

Event reads and watches (`event_log`), the listing of a tenant's tasks (`task_store`, last message per
subject) and the reading of exhaustion advisories (`task_queue`) all read through this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

from runner.adapters.nats.connection import ConnectionChange, NatsConnection

log = logging.getLogger(__name__)

# Missed heartbeats before a silent consumer counts as lost.
SILENT_HEARTBEATS: Final = 3


class StreamInterrupted(ConnectionError):
    """The reader's consumer is gone or skipped messages; open a new reader after the last one taken."""


@dataclass(frozen=True, slots=True)
class StreamMessage:
    subject: str
    stream_seq: int
    # Messages matching the filter after this one when it was delivered (0: the reader has caught up).
    pending: int
    data: bytes
    headers: Mapping[str, str]


_LOST: Final = object()


class StreamReader:
    """One ephemeral consumer on `stream` filtered by `subject`. `await open(...)`, `next()`, `close()`."""

    def __init__(self, conn: NatsConnection, stream: str, subject: str, *, heartbeat_s: float = 1.0) -> None:
        self._conn = conn
        self._stream = stream
        self._subject = subject
        self._heartbeat_s = heartbeat_s
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._sub: Subscription | None = None
        self._consumer: str | None = None
        self._consumer_seq = 0
        self._lost: str | None = None
        self._last_activity = 0.0
        self._stop_listening = conn.on_change(self._on_change)
        self._closed = False

    async def open(self, *, start_seq: int = 1, last_per_subject: bool = False) -> int:
        """Create the consumer from stream sequence `start_seq` (or at the last message of every subject
        matching the filter); returns how many messages match from there at this moment."""
        nc = self._conn.nc
        inbox = nc.new_inbox()
        self._sub = await nc.subscribe(inbox, cb=self._on_msg)
        if last_per_subject:
            policy, start = api.DeliverPolicy.LAST_PER_SUBJECT, None
        else:
            policy, start = api.DeliverPolicy.BY_START_SEQUENCE, max(1, start_seq)
        config = api.ConsumerConfig(
            deliver_subject=inbox, filter_subject=self._subject, deliver_policy=policy, opt_start_seq=start,
            ack_policy=api.AckPolicy.NONE, max_deliver=1, flow_control=True, idle_heartbeat=self._heartbeat_s,
            mem_storage=True, num_replicas=1, inactive_threshold=max(5.0, 5 * self._heartbeat_s))
        info = await self._conn.js.add_consumer(self._stream, config)
        self._consumer = info.name
        self._last_activity = asyncio.get_running_loop().time()
        return int(info.num_pending or 0)

    async def next(self, timeout_s: float | None = None) -> StreamMessage | None:
        """The next message, or None when `timeout_s` passes first. Raises `StreamInterrupted`."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        silence_s = SILENT_HEARTBEATS * self._heartbeat_s
        while True:
            if self._lost is not None:
                raise StreamInterrupted(self._lost)
            wait = self._last_activity + silence_s - loop.time()
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    item = await self._queue.get()
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    return None
                self._lose(f"no message or heartbeat for {silence_s:g} s")
                continue
            if item is _LOST:
                continue
            assert isinstance(item, Msg)
            self._last_activity = loop.time()
            message = await self._take(item)
            if message is not None:
                return message

    def interrupt(self, reason: str) -> None:
        """Make the reader's waiting (or next) `next()` raise `StreamInterrupted(reason)`."""
        self._lose(reason)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_listening()
        self._lose("the reader is closed")
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
        # Without interest the server removes the consumer after its inactive threshold anyway; deleting
        # it now frees it at once when the connection is up.
        if self._consumer is not None and self._conn.connected and not self._conn.closed:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self._conn.js.delete_consumer(self._stream, self._consumer)

    # ---- internals -------------------------------------------------------------------------------------

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        self._queue.put_nowait(_LOST)

    def _on_change(self, change: ConnectionChange) -> None:
        self._lose(f"the NATS connection was {change}")

    async def _on_msg(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    async def _take(self, msg: Msg) -> StreamMessage | None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status == "100":
            # An idle heartbeat or a flow-control request: answer the latter, check the former's count.
            if msg.reply:
                await self._conn.nc.publish(msg.reply, b"")
            stalled = headers.get("Nats-Consumer-Stalled")
            if stalled:
                await self._conn.nc.publish(stalled, b"")
            last = headers.get("Nats-Last-Consumer")
            if last is not None and int(last) != self._consumer_seq:
                self._lose(f"the consumer sent up to {last}, the reader got {self._consumer_seq}")
            return None
        if status:
            self._lose(f"the server ended the consumer: {status} {headers.get('Description', '')}".strip())
            return None
        meta = msg.metadata
        if meta.sequence.consumer != self._consumer_seq + 1:
            self._lose(f"the consumer skipped from {self._consumer_seq} to {meta.sequence.consumer}")
            return None
        self._consumer_seq = meta.sequence.consumer
        return StreamMessage(subject=msg.subject, stream_seq=meta.sequence.stream, pending=meta.num_pending,
                             data=msg.data, headers=headers)
