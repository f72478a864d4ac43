"""`EventLog` on the state database: per-task event sequences, and watchers that follow them live.

`append` reads the task's last seq and inserts seq+1 in one `BEGIN IMMEDIATE` transaction, so appends
are serialised per task (and across processes) and numbers have no gap. `time` is taken inside that
transaction, so it never goes backwards along a task's sequence within one clock.

`watch` reads pages of events after the last one it yielded until the log has no more, then sleeps on
the task's `Broadcast` ticket, taken before the read (see `signals`), so an append racing the switch
from replay to live is either in the read or wakes the watcher: never a gap, and since every read
starts after the last seq yielded, never a duplicate. Appends by this process fire the ticket once
committed; appends by another process sharing the file wake every watcher through the state database's
`data_version` poll (`StateDB.poll_interval_s`). As a last resort a watcher re-reads every `recheck_s`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable

from runner.adapters.embedded.db import StateDB
from runner.adapters.embedded.signals import Broadcast, wait
from runner.adapters.event_log_args import check_after_seq, check_task_id
from runner.adapters.json_codec import decode_payload, encode_payload
from runner.closing import AsyncClosing
from runner.domain.errors import Unavailable
from runner.domain.models import Event, EventPayload


class _Watched:
    __slots__ = ("broadcast", "watchers")

    def __init__(self) -> None:
        self.broadcast = Broadcast()
        self.watchers = 0


class SqliteEventLog(AsyncClosing):
    """Events in the `events` table of a `StateDB` (which the caller opens and closes)."""

    def __init__(self, db: StateDB, *, page_size: int = 500, recheck_s: float = 5.0) -> None:
        self._db = db
        self._page_size = page_size
        self._recheck_s = recheck_s
        self._watched: dict[str, _Watched] = {}
        self._stop_listening: Callable[[], None] | None = None
        self._closed = False

    async def close(self) -> None:
        """Stop accepting calls; running watchers raise `Unavailable`. The `StateDB` stays open."""
        if self._closed:
            return
        self._closed = True
        self._wake_all()

    async def append(self, task_id: str, payload: EventPayload) -> Event:
        self._check_open()
        check_task_id(task_id)
        body = encode_payload(payload)

        def insert(conn: sqlite3.Connection) -> tuple[int, float]:
            (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE task_id = ?",
                                  (task_id,)).fetchone()
            now = time.time()
            conn.execute("INSERT INTO events (task_id, seq, time, body) VALUES (?, ?, ?, ?)",
                         (task_id, seq, now, body))
            return seq, now

        seq, now = await self._db.write(insert, on_commit=lambda _: self._wake(task_id))
        return Event(task_id=task_id, seq=seq, time=now, payload=payload)

    async def read(self, task_id: str, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        self._check_open()
        check_after_seq(after_seq)
        if limit <= 0:
            return []

        def select(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT seq, time, body FROM events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (task_id, after_seq, limit))
            return [Event(task_id=task_id, seq=seq, time=t, payload=decode_payload(body)) for seq, t, body in rows]

        return await self._db.read(select)

    async def watch(self, task_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        self._check_open()
        check_after_seq(after_seq)
        watched = self._subscribe(task_id)
        try:
            last = after_seq
            while True:
                ticket = watched.broadcast.ticket()
                page = await self.read(task_id, last, self._page_size)
                for event in page:
                    yield event
                    last = event.seq
                    if event.is_result:
                        return
                if len(page) == self._page_size:
                    continue
                await wait(ticket, self._recheck_s)
                self._check_open()
        finally:
            self._unsubscribe(task_id, watched)

    # ---- internals -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the event log is closed")

    def _subscribe(self, task_id: str) -> _Watched:
        watched = self._watched.get(task_id)
        if watched is None:
            watched = self._watched[task_id] = _Watched()
        watched.watchers += 1
        if self._stop_listening is None:
            self._stop_listening = self._db.on_external_change(self._wake_all)
        return watched

    def _unsubscribe(self, task_id: str, watched: _Watched) -> None:
        watched.watchers -= 1
        if watched.watchers == 0 and self._watched.get(task_id) is watched:
            del self._watched[task_id]
        if not self._watched and self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None

    def _wake(self, task_id: str) -> None:
        watched = self._watched.get(task_id)
        if watched is not None:
            watched.broadcast.fire()

    def _wake_all(self) -> None:
        for watched in self._watched.values():
            watched.broadcast.fire()
