"""`TaskQueue` on a JetStream work-queue stream with one durable pull consumer shared by every worker.

**Enqueue** publishes `{"task_id", "tenant"}` to `<prefix>.tasks.queue` with `Nats-Msg-Id: <task id>`:
JetStream stores a second publish of the same id within its duplicate window once, so enqueue is
idempotent (and retried through an outage within `retry_s`).

**Receive** sends a pull request for one message to the consumer `workers` and waits for the answer: a
message, or the server's "408 Request Timeout" when the request's `expires` (the receive timeout; 10 ms
for `timeout_s=0`) runs out. Each request has an inbox of its own that ends with its one answer, so
concurrent receivers never take each other's answers. Because the server always answers an expiring
request, a receiver never gives up before the server does and so never leaves behind a request that
would later take a message nobody waits for (nats-py's `fetch` does, when its client-side timer wins, and
it refuses a zero timeout). Should that happen anyway (the connection dropped, or the receiving task was
cancelled), the inbox stays until the answer comes and a message in it is nak'ed at once, so it goes to
another worker without waiting for its ack deadline. A receiver does not spin through an outage:
without a connection it raises `Unavailable` at once (the worker sleeps its delay), and a disconnect
wakes waiting receivers with it. Two receivers never get the same delivery: JetStream hands each
message to one pull request at a time.

**Delivery**: `attempt` is the message's delivery count; `in_progress()` (`+WPI`) restarts the ack
deadline; `ack()`, `nak(delay)` and `term()` are requests the server confirms, retried within `retry_s`
(a lost ack would run the task again). On a work-queue stream `ack` and `term` delete the message.

**Exhaustion.** After `max_deliver` deliveries without an ack the message stays in the stream, is not
delivered again, and the server publishes a max-deliveries advisory, which the layout captures in the
`<prefix>-queue-exhausted` stream. On nats-server 2.9 the server notices when the consumer is next asked
for work after the last delivery's deadline (workers ask all the time). `exhausted()` reads those
advisories, fetches each named message from the queue stream to learn its task, and lists them oldest
first; `discard(task_id)` deletes the queue message and its advisories. An advisory whose message is gone
(acked after all by a late worker, or discarded by another process) is deleted silently.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from runner.adapters.json_codec import DecodeError, from_json, to_json
from runner.adapters.nats.connection import ConnectionChange, NatsConnection
from runner.adapters.nats.layout import Layout
from runner.adapters.nats.reader import StreamReader
from runner.adapters.nats.retry import retrying
from runner.closing import AsyncClosing
from runner.domain.errors import InvalidArgument, Unavailable
from runner.ports import ExhaustedTask, QueuedTask

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
# The shortest pull a receive makes (a `timeout_s` of 0 still gives the server time to hand over a message).
MIN_PULL_S = 0.01
# A receive without a timeout pulls in rounds of this length.
LONG_PULL_S = 30.0


def _encode_task(task: QueuedTask) -> bytes:
    return json.dumps(to_json(task), ensure_ascii=False, separators=(",", ":")).encode()


def _decode_task(data: bytes) -> QueuedTask:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"a queued task is not valid JSON: {exc}") from exc
    return from_json(QueuedTask, obj, "queued task")


class JetStreamDelivery:
    """One delivery of a queued task (`Delivery`)."""

    def __init__(self, queue: JetStreamTaskQueue, msg: Msg, task: QueuedTask) -> None:
        self._queue = queue
        self._msg = msg
        self._task = task
        self._attempt = msg.metadata.num_delivered
        self._settled = False

    @property
    def task(self) -> QueuedTask:
        return self._task

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def stream_seq(self) -> int:
        return self._msg.metadata.sequence.stream

    async def in_progress(self) -> None:
        if not self._settled:
            await self._queue._confirm(self._msg, b"+WPI", f"extend the deadline of task {self._task.task_id}",
                                       retry=False)

    async def ack(self) -> None:
        await self._settle(b"+ACK", "ack")

    async def term(self) -> None:
        await self._settle(b"+TERM", "term")

    async def nak(self, delay_s: float) -> None:
        body = b"-NAK"
        if delay_s > 0:
            body += b" " + json.dumps({"delay": int(delay_s * 1e9)}).encode()
        await self._settle(body, "nak")

    async def _settle(self, body: bytes, how: str) -> None:
        if self._settled:
            return
        await self._queue._confirm(self._msg, body, f"{how} task {self._task.task_id}", retry=True)
        self._settled = True


class _Pull:
    """One pull request for one message, answered on its own inbox by the server: a message or a status."""

    def __init__(self, queue: JetStreamTaskQueue, deadline: float) -> None:
        self.queue = queue
        self.deadline = deadline  # past it, no answer will come
        self.answer: asyncio.Future[Msg | None] = asyncio.get_running_loop().create_future()
        self.sub: Subscription | None = None
        self.answered = False  # the server answered (and the subscription ended with it)
        self.abandoned = False  # the receiver left before the answer

    def fail(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)
            self.answer.exception()  # marked retrieved: a receiver that left does not read it

    async def on_msg(self, msg: Msg) -> None:
        self.answered = True
        self.queue._pulls.discard(self)
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:
            if self.abandoned or self.answer.done():
                await self.queue._hand_back(msg)
            else:
                self.answer.set_result(msg)
        elif self.answer.done():
            pass
        elif status in ("404", "408"):
            self.answer.set_result(None)
        else:
            self.fail(Unavailable(
                f"NATS at {self.queue._conn.url} refused a pull from {self.queue._layout.queue_stream}/"
                f"{self.queue._layout.queue_consumer}: {status} {headers.get('Description', '')}".strip()))


@dataclass(frozen=True, slots=True)
class _Advisory:
    seq: int  # in the advisories stream
    stream_seq: int  # of the exhausted message in the queue stream
    deliveries: int
    at: float


class JetStreamTaskQueue(AsyncClosing):
    """The queue of a `Layout` on a shared `NatsConnection` (which is not closed here)."""

    def __init__(self, conn: NatsConnection, layout: Layout) -> None:
        self._conn = conn
        self._layout = layout
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{layout.queue_stream}.{layout.queue_consumer}"
        self._pulls: set[_Pull] = set()
        self._stop_listening = conn.on_change(self._on_change)
        self._closed = False

    async def close(self) -> None:
        """Stop accepting calls; waiting receivers raise `Unavailable`. The connection stays open."""
        if self._closed:
            return
        self._closed = True
        self._stop_listening()
        for pull in list(self._pulls):
            pull.fail(Unavailable("the task queue is closed"))
            await self._forget(pull)

    # ---- TaskQueue -------------------------------------------------------------------------------------

    async def enqueue(self, task: QueuedTask) -> None:
        self._check_open()
        if not task.task_id:
            raise InvalidArgument("a queued task needs a task id")
        data = _encode_task(task)

        async def publish() -> None:
            await self._conn.js.publish(self._layout.queue_subject, data, headers={MSG_ID: task.task_id})

        await retrying(self._conn, f"enqueue task {task.task_id}", publish)

    async def receive(self, timeout_s: float | None = None) -> JetStreamDelivery | None:
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + max(0.0, timeout_s)
        while True:
            pull_s = LONG_PULL_S if deadline is None else max(MIN_PULL_S, deadline - loop.time())
            msg = await self._pull(pull_s)
            if msg is not None:
                delivery = await self._delivery(msg)
                if delivery is not None:
                    return delivery
            if deadline is not None and loop.time() >= deadline:
                return None

    async def exhausted(self, limit: int = 100) -> list[ExhaustedTask]:
        self._check_open()
        if limit <= 0:
            return []
        found: list[ExhaustedTask] = []
        for stream_seq, advisories in (await self._advisories()).items():
            task = await self._exhausted_task(stream_seq, advisories)
            if task is not None:
                first = advisories[0]
                found.append(ExhaustedTask(task, attempts=first.deliveries, exhausted_at=first.at))
                if len(found) >= limit:
                    break
        return found

    async def discard(self, task_id: str) -> bool:
        self._check_open()
        for stream_seq, advisories in (await self._advisories()).items():
            task = await self._exhausted_task(stream_seq, advisories)
            if task is not None and task.task_id == task_id:
                await self._delete(self._layout.queue_stream, stream_seq)
                for advisory in advisories:
                    await self._delete(self._layout.advisories_stream, advisory.seq)
                log.info("exhausted task discarded from the queue", extra={"task_id": task_id,
                                                                           "stream_seq": stream_seq})
                return True
        return False

    # ---- receiving -------------------------------------------------------------------------------------

    async def _pull(self, expires_s: float) -> Msg | None:
        """One pull request for one message; None when it expired with nothing to deliver."""
        if not self._conn.connected:
            raise self._conn.unavailable("receive a task (disconnected)")
        await self._sweep()
        loop = asyncio.get_running_loop()
        # The server answers by the request's expiry at the latest; past it by a request timeout, the answer
        # is lost (the connection failed under it).
        pull = _Pull(self, loop.time() + expires_s + self._conn.settings.request_timeout_s)
        request = json.dumps({"batch": 1, "expires": int(expires_s * 1e9)}).encode()
        try:
            inbox = self._conn.nc.new_inbox()
            # One answer per request (a message or a status), so the subscription ends itself after it.
            pull.sub = await self._conn.nc.subscribe(inbox, cb=pull.on_msg, max_msgs=1)
            self._pulls.add(pull)
            await self._conn.nc.publish(self._next_subject, request, reply=inbox)
            async with asyncio.timeout(pull.deadline - loop.time()):
                return await pull.answer
        except TimeoutError as exc:
            raise self._conn.unavailable("receive a task (no answer to a pull request)", exc) from exc
        except nats.errors.Error as exc:
            raise self._conn.unavailable("receive a task", exc) from exc
        finally:
            # A pull its receiver left (timed out, cancelled) stays until its answer comes, so that a task
            # delivered to it can be handed back (`_Pull.on_msg`), or until `_sweep` finds it lost.
            if not pull.answered:
                pull.abandoned = True

    async def _sweep(self) -> None:
        """Unsubscribe pulls that will get no answer any more (their connection failed under them)."""
        now = asyncio.get_running_loop().time()
        for pull in [p for p in self._pulls if p.deadline < now and not p.answered]:
            await self._forget(pull)

    async def _forget(self, pull: _Pull) -> None:
        self._pulls.discard(pull)
        if pull.sub is not None and not pull.answered:
            try:
                await pull.sub.unsubscribe()
            except nats.errors.Error as exc:
                log.debug("unsubscribing a pull's inbox failed", extra={"error": repr(exc)})
        pull.fail(Unavailable("the pull request was abandoned"))

    async def _hand_back(self, msg: Msg) -> None:
        """A task delivered to a pull whose receiver left: let another worker have it now rather than after
        the ack deadline."""
        log.info("a delivery arrived after its receiver left; handed back",
                 extra={"stream_seq": msg.metadata.sequence.stream})
        try:
            await msg.nak()
        except nats.errors.Error as exc:
            log.warning("handing back a delivery failed", extra={"error": repr(exc)})

    async def _delivery(self, msg: Msg) -> JetStreamDelivery | None:
        try:
            task = _decode_task(msg.data)
        except DecodeError as exc:
            # Nothing can run it; keeping it would only block a worker at every delivery.
            log.error("undecodable message removed from the task queue",
                      extra={"error": str(exc), "stream_seq": msg.metadata.sequence.stream})
            await self._confirm(msg, b"+TERM", "remove an undecodable queued task", retry=True)
            return None
        return JetStreamDelivery(self, msg, task)

    async def _confirm(self, msg: Msg, body: bytes, what: str, *, retry: bool) -> None:
        reply = msg.reply or ""

        async def send() -> None:
            await self._conn.nc.request(reply, body, timeout=self._conn.settings.request_timeout_s)

        if retry:
            await retrying(self._conn, what, send)
            return
        try:
            await send()
        except (nats.errors.Error, TimeoutError) as exc:
            raise self._conn.unavailable(what, exc) from exc

    def _on_change(self, change: ConnectionChange) -> None:
        if change != "reconnected":
            for pull in self._pulls:
                if not pull.abandoned:
                    pull.fail(self._conn.unavailable(f"receive a task (the connection was {change})"))

    # ---- exhaustion ------------------------------------------------------------------------------------

    async def _advisories(self) -> dict[int, list[_Advisory]]:
        """Advisories by the stream sequence of the message they are about, oldest first."""
        advisories = await retrying(self._conn, "read the queue's max-deliveries advisories", self._read_advisories)
        grouped: dict[int, list[_Advisory]] = {}
        for advisory in advisories:
            grouped.setdefault(advisory.stream_seq, []).append(advisory)
        return grouped

    async def _read_advisories(self) -> list[_Advisory]:
        reader = StreamReader(self._conn, self._layout.advisories_stream, self._layout.advisory_subject)
        found: list[_Advisory] = []
        try:
            if await reader.open():
                while True:
                    message = await reader.next(self._conn.settings.request_timeout_s)
                    if message is None:
                        raise TimeoutError("the queue's advisories stopped arriving")
                    advisory = _decode_advisory(message.stream_seq, message.data)
                    if advisory is not None:
                        found.append(advisory)
                    if message.pending == 0:
                        break
        finally:
            await reader.close()
        return found

    async def _exhausted_task(self, stream_seq: int, advisories: list[_Advisory]) -> QueuedTask | None:
        """The task of an exhausted message, or None (and its advisories deleted) if it is gone."""
        async def fetch() -> bytes | None:
            try:
                raw = await self._conn.js.get_msg(self._layout.queue_stream, seq=stream_seq)
            except nats.js.errors.NotFoundError:
                return None
            return raw.data or b""

        data = await retrying(self._conn, "read an exhausted task", fetch)
        if data is not None:
            return _decode_task(data)
        for advisory in advisories:
            await self._delete(self._layout.advisories_stream, advisory.seq)
        return None

    async def _delete(self, stream: str, seq: int) -> None:
        async def delete() -> None:
            try:
                await self._conn.js.delete_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                pass  # deleted already, by another process or an earlier try
            except nats.js.errors.BadRequestError as exc:
                if "no message found" not in (exc.description or "").lower():
                    raise

        await retrying(self._conn, f"delete message {seq} of {stream}", delete)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the task queue is closed")


def _decode_advisory(seq: int, data: bytes) -> _Advisory | None:
    try:
        body = json.loads(data)
        return _Advisory(seq=seq, stream_seq=int(body["stream_seq"]), deliveries=int(body["deliveries"]),
                         at=_parse_time(str(body["timestamp"])))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("an unreadable max-deliveries advisory was skipped", extra={"seq": seq, "error": repr(exc)})
        return None


def _parse_time(text: str) -> float:
    """RFC 3339 with up to nanoseconds (Go's format) as Unix time."""
    head, _, zone = text.replace("Z", "+00:00").partition("+")
    if "." in head:
        whole, fraction = head.split(".", 1)
        head = f"{whole}.{fraction[:6].ljust(6, '0')}"
    return datetime.datetime.fromisoformat(f"{head}+{zone or '00:00'}").timestamp()

