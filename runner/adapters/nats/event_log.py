"""`EventLog` on a JetStream stream: one subject per task (`<prefix>.events.<task>`), one message per event.

**Numbering.** A message body is the event's JSON (`json_codec.encode_event`), its per-task `seq` included.
`append` publishes event n+1 with `Nats-Expected-Last-Subject-Sequence` set to the stream sequence of
event n (0 before the first): JetStream stores it only if event n is still the last message of the task's
subject, so appends from any number of processes are serialised per task and the numbers have no gap. A
writer that loses the race (`wrong last sequence`) reads the task's last event again and numbers its
event after it. Within a process, appends to one task wait for each other on a lock, so they do not race
at all, and the last (seq, stream sequence) of a task is cached: one round trip per append.

**Retries.** Every publish carries `Nats-Msg-Id: <task>:<seq>:<nonce>`, with a nonce drawn once per
`append` call. When a publish times out or the server is down, the same message is sent again until it
is acknowledged or `NatsSettings.retry_s` has passed (then `Unavailable`): if the first copy was stored
and only its acknowledgement was lost, JetStream answers the retry as a duplicate of it, within its
duplicate window (`JetStreamLimits.duplicate_window_s`, longer than `retry_s`), so the event is stored
once. The nonce matters: JetStream checks the message id before the expected sequence, so a plain
`<task>:<seq>` from another process appending the same number would be taken for ours. Should a retry
find the subject moved on instead, the last message's id tells whether it is ours.

**Reading.** A read or a watch starts at the stream sequence of the first event after `after_seq`,
found by a binary search with "next message of this subject at or after sequence s" requests (a dozen
or two round trips on a large stream; none when the reader starts at the beginning or at the end), then
reads through a `StreamReader`: an ephemeral push consumer filtered on the task's subject that pushes
each event as soon as it is stored (no polling). A watcher remembers the stream sequence of the last
event it yielded; when its reader is interrupted (a NATS restart, a gap, silent heartbeats) it opens a
new one right after it, retrying within `retry_s`, and skips any event at or below the last seq it
yielded, so each event is yielded exactly once, in order. Events removed by the stream's retention
(`events_max_age_s`, `events_max_bytes`) are the one gap a reader can meet; it logs a warning and goes on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import nats.js.errors

from runner.adapters.event_log_args import check_after_seq, check_task_id
from runner.adapters.json_codec import decode_event, encode_event
from runner.adapters.nats.connection import NatsConnection
from runner.adapters.nats.layout import WRONG_LAST_SEQUENCE, Layout, token
from runner.adapters.nats.reader import StreamInterrupted, StreamReader
from runner.adapters.nats.retry import retrying
from runner.closing import AsyncClosing
from runner.domain.errors import Unavailable
from runner.domain.models import Event, EventPayload

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"


@dataclass(frozen=True, slots=True)
class _Tail:
    """The last event of a task: its seq, stream sequence and message id (0, 0, "" for none)."""

    seq: int
    stream_seq: int
    msg_id: str = ""
    event: Event | None = None


_EMPTY = _Tail(0, 0)


class _TaskLocks:
    """One asyncio lock per task with appends in flight, dropped when the last one leaves."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[asyncio.Lock]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            yield lock
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class JetStreamEventLog(AsyncClosing):
    """Events of every task in the `Layout.events_stream` of a shared `NatsConnection` (not closed here)."""

    def __init__(self, conn: NatsConnection, layout: Layout, *, heartbeat_s: float = 1.0,
                 cached_tasks: int = 10_000) -> None:
        self._conn = conn
        self._layout = layout
        self._stream = layout.events_stream
        self._heartbeat_s = heartbeat_s
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._cached_tasks = cached_tasks
        self._locks = _TaskLocks()
        self._readers: set[StreamReader] = set()
        self._closed = False

    async def close(self) -> None:
        """Stop accepting calls; running watchers raise `Unavailable`. The connection stays open."""
        if self._closed:
            return
        self._closed = True
        for reader in list(self._readers):
            reader.interrupt("the event log is closed")

    # ---- EventLog --------------------------------------------------------------------------------------

    async def append(self, task_id: str, payload: EventPayload) -> Event:
        self._check_open()
        check_task_id(task_id)
        subject = self._layout.events_subject(task_id)
        nonce = secrets.token_hex(6)
        # The event being published and what it was numbered after: kept through retries of one publish
        # (same message id), renumbered only when another writer got there first.
        pending: tuple[Event, str, _Tail] | None = None

        async def attempt() -> Event | None:
            nonlocal pending
            if pending is None:
                tail = self._tails.get(task_id) or await self._load_tail(task_id)
                event = Event(task_id=task_id, seq=tail.seq + 1, time=time.time(), payload=payload)
                pending = (event, f"{token(task_id)}:{event.seq}:{nonce}", tail)
            stored = await self._publish(subject, *pending)
            if stored is None:
                pending = None
            return stored

        with self._locks.hold(task_id) as lock:
            async with lock:
                while True:
                    stored = await retrying(self._conn, f"append an event to task {task_id}", attempt)
                    if stored is not None:
                        return stored

    async def read(self, task_id: str, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        self._check_open()
        check_after_seq(after_seq)
        if limit <= 0:
            return []
        return await retrying(self._conn, f"read the events of task {task_id}",
                              lambda: self._read_once(task_id, after_seq, limit))

    async def watch(self, task_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        self._check_open()
        check_after_seq(after_seq)
        last, last_stream_seq = after_seq, 0
        while True:
            reader = await retrying(self._conn, f"follow the events of task {task_id}",
                                    lambda: self._open_at(task_id, last, last_stream_seq))  # noqa: B023
            try:
                while True:
                    message = await reader.next()
                    assert message is not None  # no timeout given
                    event = self._decode(task_id, message.data)
                    last_stream_seq = message.stream_seq
                    if event.seq <= last:
                        continue
                    if event.seq != last + 1:
                        self._report_missing(task_id, last, event.seq)
                    last = event.seq
                    yield event
                    if event.is_result:
                        return
            except StreamInterrupted as exc:
                self._check_open()
                log.info("event watcher resumes", extra={"task_id": task_id, "after_seq": last,
                                                         "reason": str(exc)})
            finally:
                await self._release(reader)

    # ---- appending -------------------------------------------------------------------------------------

    async def _publish(self, subject: str, event: Event, msg_id: str, tail: _Tail) -> Event | None:
        """One publish of `event` after `tail`: the stored event, or None when another writer got there
        first (the tail cache is then dropped). Raises what nats-py raises, for `retrying` to judge."""
        headers = {MSG_ID: msg_id, EXPECTED_LAST_SUBJECT_SEQ: str(tail.stream_seq)}
        try:
            ack = await self._conn.js.publish(subject, encode_event(event).encode(), headers=headers)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            self._tails.pop(event.task_id, None)
            current = await self._load_tail(event.task_id)
            if current.msg_id == msg_id and current.event is not None:  # ours, stored by an earlier try
                return current.event
            return None
        if ack.duplicate:
            log.info("event stored by an earlier try", extra={"task_id": event.task_id, "seq": event.seq})
        self._remember(event.task_id, _Tail(event.seq, ack.seq, msg_id))
        return event

    async def _load_tail(self, task_id: str) -> _Tail:
        """The task's last event, from the stream leader (never a stale replica: appends rely on it)."""
        try:
            raw = await self._conn.js.get_msg(self._stream, subject=self._layout.events_subject(task_id))
        except nats.js.errors.NotFoundError:
            return _EMPTY
        event = self._decode(task_id, raw.data or b"")
        tail = _Tail(event.seq, int(raw.seq or 0), (raw.headers or {}).get(MSG_ID, ""), event)
        self._remember(task_id, tail)
        return tail

    def _remember(self, task_id: str, tail: _Tail) -> None:
        self._tails[task_id] = _Tail(tail.seq, tail.stream_seq, tail.msg_id)
        self._tails.move_to_end(task_id)
        while len(self._tails) > self._cached_tasks:
            self._tails.popitem(last=False)

    # ---- reading ---------------------------------------------------------------------------------------

    async def _read_once(self, task_id: str, after_seq: int, limit: int) -> list[Event]:
        tail = await self._load_tail(task_id)
        if tail.seq <= after_seq:
            return []
        wanted = min(limit, tail.seq - after_seq)
        reader = await self._open_reader(task_id, await self._locate(task_id, after_seq, tail))
        events: list[Event] = []
        last = after_seq
        try:
            while len(events) < wanted:
                message = await reader.next(self._conn.settings.request_timeout_s)
                if message is None:
                    raise TimeoutError(f"events of task {task_id} stopped arriving")
                event = self._decode(task_id, message.data)
                if event.seq > last:
                    if event.seq != last + 1:
                        self._report_missing(task_id, last, event.seq)
                    events.append(event)
                    last = event.seq
                if message.pending == 0:
                    break
        finally:
            await self._release(reader)
        return events

    async def _open_at(self, task_id: str, after_seq: int, after_stream_seq: int) -> StreamReader:
        """A reader that starts with the first event after `after_seq`, whose predecessor, if it was read,
        is at `after_stream_seq`."""
        self._check_open()
        if after_stream_seq:
            start = after_stream_seq + 1
        else:
            tail = await self._load_tail(task_id)
            start = tail.stream_seq + 1 if tail.seq <= after_seq else await self._locate(task_id, after_seq, tail)
        return await self._open_reader(task_id, start)

    async def _locate(self, task_id: str, after_seq: int, tail: _Tail) -> int:
        """The stream sequence from which the first event after `after_seq` is the task's next message,
        given `tail` (the last event, with seq > after_seq)."""
        if after_seq == 0:
            return 1
        if tail.seq == after_seq + 1:
            return tail.stream_seq
        subject = self._layout.events_subject(task_id)
        low, high = 1, tail.stream_seq
        while low < high:
            middle = (low + high) // 2
            try:
                raw = await self._conn.js.get_msg(self._stream, seq=middle, subject=subject, next=True)
            except nats.js.errors.NotFoundError:  # removed meanwhile by retention
                high = middle
                continue
            if self._decode(task_id, raw.data or b"").seq > after_seq:
                high = middle
            else:
                low = int(raw.seq or middle) + 1
        return high

    async def _open_reader(self, task_id: str, start_seq: int) -> StreamReader:
        reader = StreamReader(self._conn, self._stream, self._layout.events_subject(task_id),
                              heartbeat_s=self._heartbeat_s)
        self._readers.add(reader)
        try:
            await reader.open(start_seq=start_seq)
        except BaseException:
            await self._release(reader)
            raise
        return reader

    async def _release(self, reader: StreamReader) -> None:
        self._readers.discard(reader)
        await reader.close()

    # ---- internals -------------------------------------------------------------------------------------

    def _decode(self, task_id: str, data: bytes) -> Event:
        event = decode_event(data)
        if event.task_id != task_id:
            raise Unavailable(f"the events stream {self._stream} holds an event of task {event.task_id!r} on "
                              f"the subject of task {task_id!r}")
        return event

    @staticmethod
    def _report_missing(task_id: str, last: int, got: int) -> None:
        log.warning("events missing from the stream (removed by its retention limits)",
                    extra={"task_id": task_id, "from_seq": last + 1, "to_seq": got - 1})

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the event log is closed")
