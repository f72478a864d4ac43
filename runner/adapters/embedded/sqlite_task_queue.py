"""`TaskQueue` on the state database: a durable work queue with leases, like a JetStream pull consumer.

A row per queued task (`schema`), from `enqueue` until `ack` or `term`. `receive` claims the row that
has been visible longest, in one `BEGIN IMMEDIATE` transaction (so two receivers, in this process or
another, never both get it): it counts the attempt and sets a lease that hides the row for `ack_wait_s`.
From there:

* `in_progress()` pushes the lease's deadline `ack_wait_s` further;
* `ack()` / `term()` delete the row;
* `nak(delay)` makes the row visible again after `delay` and ends the lease;
* nothing (the worker or the whole runner died): the row becomes visible when the deadline passes and is
  delivered again with the next attempt number, after a restart too. `release_leases()` lets the only
  consumer of a database, starting up, take back a crashed predecessor's deliveries at once.

Each operation of a delivery applies only while the row still carries that delivery's lease: a worker
that lost its lease (its deadline passed and the task went to someone else) cannot ack or extend the
new delivery. A row that was delivered `max_deliver` times is not delivered again once its last lease
ends; it is marked exhausted and listed by `exhausted()` until the runner, having failed the task with
a reason, removes it with `discard()`.

Receivers wait on a `Broadcast` fired by `enqueue` and `nak` (no polling in the common path), with
timeouts at the next row's visibility time; enqueues by another process arrive through the state
database's `data_version` poll.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from runner.adapters.embedded.db import StateDB
from runner.adapters.embedded.signals import Broadcast, wait
from runner.closing import AsyncClosing
from runner.domain.errors import InvalidArgument, Unavailable
from runner.ports import ExhaustedTask, QueuedTask

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Claim:
    task: QueuedTask
    attempt: int
    lease: str


class SqliteDelivery:
    """One delivery of a queued task (`Delivery`)."""

    def __init__(self, queue: SqliteTaskQueue, claim: _Claim) -> None:
        self._queue = queue
        self._claim = claim
        self._settled = False

    @property
    def task(self) -> QueuedTask:
        return self._claim.task

    @property
    def attempt(self) -> int:
        return self._claim.attempt

    async def in_progress(self) -> None:
        if not self._settled:
            await self._queue._extend(self._claim)

    async def ack(self) -> None:
        await self._settle("ack")

    async def term(self) -> None:
        await self._settle("term")

    async def nak(self, delay_s: float) -> None:
        if self._settled:
            return
        self._settled = True
        await self._queue._release(self._claim, max(0.0, delay_s))

    async def _settle(self, how: str) -> None:
        if self._settled:
            return
        self._settled = True
        await self._queue._remove(self._claim, how)


class SqliteTaskQueue(AsyncClosing):
    """The `queue` table of a `StateDB` (which the caller opens and closes)."""

    def __init__(self, db: StateDB, *, ack_wait_s: float = 60.0, max_deliver: int = 5,
                 recheck_s: float = 5.0) -> None:
        if ack_wait_s <= 0 or max_deliver < 1:
            raise ValueError("ack_wait_s must be positive and max_deliver at least 1")
        self._db = db
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self._recheck_s = recheck_s
        self._broadcast = Broadcast()
        self._receivers = 0
        self._stop_listening: Callable[[], None] | None = None
        self._closed = False

    async def close(self) -> None:
        """Stop accepting calls; waiting receivers raise `Unavailable`. The `StateDB` stays open."""
        if self._closed:
            return
        self._closed = True
        self._broadcast.fire()

    # ---- TaskQueue -------------------------------------------------------------------------------------

    async def enqueue(self, task: QueuedTask) -> None:
        self._check_open()
        if not task.task_id:
            raise InvalidArgument("a queued task needs a task id")

        def insert(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute("INSERT OR IGNORE INTO queue (task_id, tenant, enqueued_at, visible_at, attempts) "
                         "VALUES (?, ?, ?, ?, 0)", (task.task_id, task.tenant, now, now))

        await self._db.write(insert, on_commit=self._wake)

    async def receive(self, timeout_s: float | None = None) -> SqliteDelivery | None:
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        self._add_receiver()
        try:
            while True:
                ticket = self._broadcast.ticket()
                claim, next_visible = await self._db.write(self._claim)
                if claim is not None:
                    return SqliteDelivery(self, claim)
                pause = self._recheck_s
                if next_visible is not None:
                    pause = min(pause, max(0.0, next_visible - time.time()))
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return None
                    pause = min(pause, remaining)
                await wait(ticket, pause)
                self._check_open()
        finally:
            self._remove_receiver()

    async def exhausted(self, limit: int = 100) -> list[ExhaustedTask]:
        """Tasks that will not be delivered again because they used up `max_deliver` deliveries, oldest
        first: listed as soon as the last delivery's deadline has passed. The runner marks each FAILED
        with a reason, then `discard`s it."""
        self._check_open()

        def select(conn: sqlite3.Connection) -> list[ExhaustedTask]:
            self._mark_exhausted(conn, time.time())
            rows = conn.execute("SELECT task_id, tenant, attempts, exhausted_at FROM queue "
                                "WHERE exhausted_at IS NOT NULL ORDER BY exhausted_at, rowid LIMIT ?", (limit,))
            return [ExhaustedTask(QueuedTask(task_id, tenant), attempts, at) for task_id, tenant, attempts, at in rows]

        return await self._db.write(select)

    async def discard(self, task_id: str) -> bool:
        """Forget an exhausted task; False if there was none by that id."""
        self._check_open()

        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM queue WHERE task_id = ? AND exhausted_at IS NOT NULL",
                                (task_id,)).rowcount > 0

        return await self._db.write(delete)

    # ---- for the runner --------------------------------------------------------------------------------

    async def release_leases(self) -> int:
        """Make every delivered, un-acked task visible now (its next delivery counts as a new attempt).
        Only for the sole consumer of the database at start-up: a crashed predecessor's work is taken
        back at once instead of after its `ack_wait_s`. Returns how many were released."""
        self._check_open()

        def release(conn: sqlite3.Connection) -> int:
            return int(conn.execute("UPDATE queue SET visible_at = ?, lease = NULL "
                                    "WHERE lease IS NOT NULL AND exhausted_at IS NULL", (time.time(),)).rowcount)

        released = await self._db.write(release, on_commit=self._wake)
        if released:
            log.info("released the leases of a previous run", extra={"count": released})
        return released

    # ---- internals -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the task queue is closed")

    def _wake(self, _: object = None) -> None:
        self._broadcast.fire()

    def _add_receiver(self) -> None:
        self._receivers += 1
        if self._stop_listening is None:
            self._stop_listening = self._db.on_external_change(self._wake)

    def _remove_receiver(self) -> None:
        self._receivers -= 1
        if not self._receivers and self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None

    def _mark_exhausted(self, conn: sqlite3.Connection, now: float) -> None:
        rows = conn.execute("UPDATE queue SET exhausted_at = ?, lease = NULL WHERE exhausted_at IS NULL "
                            "AND attempts >= ? AND visible_at <= ? RETURNING task_id, tenant, attempts",
                            (now, self.max_deliver, now)).fetchall()
        for task_id, tenant, attempts in rows:
            log.warning("task used up its deliveries", extra={"task_id": task_id, "tenant": tenant,
                                                              "attempts": attempts})

    def _claim(self, conn: sqlite3.Connection) -> tuple[_Claim | None, float | None]:
        """In a write transaction: take the next visible task, or say when the next one becomes visible."""
        now = time.time()
        self._mark_exhausted(conn, now)
        row = conn.execute("SELECT rowid, task_id, tenant, attempts FROM queue "
                           "WHERE exhausted_at IS NULL AND visible_at <= ? ORDER BY visible_at, rowid LIMIT 1",
                           (now,)).fetchone()
        if row is None:
            (next_visible,) = conn.execute("SELECT MIN(visible_at) FROM queue WHERE exhausted_at IS NULL").fetchone()
            return None, next_visible
        rowid, task_id, tenant, attempts = row
        lease = secrets.token_hex(8)
        conn.execute("UPDATE queue SET attempts = ?, lease = ?, visible_at = ? WHERE rowid = ?",
                     (attempts + 1, lease, now + self.ack_wait_s, rowid))
        return _Claim(QueuedTask(task_id, tenant), attempts + 1, lease), None

    async def _extend(self, claim: _Claim) -> None:
        def extend(conn: sqlite3.Connection) -> int:
            return int(conn.execute("UPDATE queue SET visible_at = ? WHERE task_id = ? AND lease = ?",
                                    (time.time() + self.ack_wait_s, claim.task.task_id, claim.lease)).rowcount)

        if not await self._db.write(extend):
            log.warning("heartbeat for a delivery that no longer holds its task",
                        extra={"task_id": claim.task.task_id, "attempt": claim.attempt})

    async def _remove(self, claim: _Claim, how: str) -> None:
        def delete(conn: sqlite3.Connection) -> int:
            return int(conn.execute("DELETE FROM queue WHERE task_id = ? AND lease = ?",
                                    (claim.task.task_id, claim.lease)).rowcount)

        if not await self._db.write(delete):
            log.warning("ack or term for a delivery that no longer holds its task",
                        extra={"task_id": claim.task.task_id, "attempt": claim.attempt, "op": how})

    async def _release(self, claim: _Claim, delay_s: float) -> None:
        def release(conn: sqlite3.Connection) -> int:
            return int(conn.execute("UPDATE queue SET visible_at = ?, lease = NULL WHERE task_id = ? AND lease = ?",
                                    (time.time() + delay_s, claim.task.task_id, claim.lease)).rowcount)

        if not await self._db.write(release, on_commit=self._wake):
            log.warning("nak for a delivery that no longer holds its task",
                        extra={"task_id": claim.task.task_id, "attempt": claim.attempt})
