"""The embedded runner's state database: one SQLite file shared by the task store, event log and queue.

One connection lives on one dedicated thread; each store operation is a single function run there in
one hop, a whole transaction at a time (`write` wraps it in `BEGIN IMMEDIATE ... COMMIT`). That costs
one thread hop per operation (about 0.1 ms), where aiosqlite costs one per statement; and since one
thread runs them all, the operations of this process are serialised without any lock of ours.

The file is in WAL mode: readers in other processes (a `codex-sys watch` next to the runner) do not
block the writer, and `BEGIN IMMEDIATE` plus SQLite's busy timeout serialise writers across processes.
`synchronous=NORMAL` means a commit survives a crash of the process but the last commits may be lost in
a power cut, which the embedded runner accepts in exchange for appends that do not wait on the disk.

Changes made by other processes are noticed by polling `PRAGMA data_version` (it changes when another
connection commits) every `poll_interval_s`, only while someone listens (`on_external_change`); changes
made through this connection are signalled by the stores themselves, at once.

SQLite errors become `Unavailable` (retryable) with the original as `__cause__`; errors the stores raise
on purpose inside a transaction (`Conflict`, `NotFound`...) roll it back and pass through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from runner.adapters.embedded.schema import migrate
from runner.closing import AsyncClosing
from runner.domain.errors import CodexError, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class StateDB(AsyncClosing):
    """Open with `await StateDB.open(path)` (or `open_state_db`); close after the stores using it."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor, conn: sqlite3.Connection,
                 poll_interval_s: float) -> None:
        self.path = path
        self.poll_interval_s = poll_interval_s
        self._executor = executor
        self._conn = conn
        self._closed = False
        self._listeners: list[Callable[[], None]] = []
        self._listening = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, *, busy_timeout_s: float = 10.0, poll_interval_s: float = 0.25) -> StateDB:
        """Open (creating if needed) the database at `path` and bring its schema up to date."""
        path = Path(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-db")
        loop = asyncio.get_running_loop()

        def connect() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=busy_timeout_s)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
                previous = migrate(conn)
            except BaseException:
                conn.close()
                raise
            if previous != 0:
                log.debug("state database opened", extra={"path": str(path), "schema_version": previous})
            else:
                log.info("state database created", extra={"path": str(path)})
            return conn

        try:
            conn = await loop.run_in_executor(executor, connect)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise Unavailable(f"cannot open the state database {path}: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        db = cls(path, executor, conn, poll_interval_s)
        db._poller = asyncio.create_task(db._poll_external_changes(), name=f"state-db-poll:{path}")
        db._poller.add_done_callback(_log_poller_exit)
        return db

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the database thread. Several statements that must agree wrap themselves
        in a (deferred) transaction, or use `write`."""
        return await self._run(fn, transaction=False)

    async def write(self, fn: Callable[[sqlite3.Connection], T],
                    on_commit: Callable[[T], None] | None = None) -> T:
        """Run `fn(conn)` in one `BEGIN IMMEDIATE` transaction, committed if `fn` returns and rolled
        back if it raises. `on_commit(result)` runs on the event loop once the transaction committed,
        even if the caller was cancelled meanwhile (a cancelled caller cannot stop a transaction that
        already reached the database thread, so it must not skip the wake-ups that follow it)."""
        return await self._run(fn, transaction=True, on_commit=on_commit)

    def on_external_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (on the event loop) whenever another connection committed, and once when the
        database closes; returns a function that removes it."""
        self._listeners.append(callback)
        self._listening.set()

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)
            if not self._listeners:
                self._listening.clear()
        return remove

    async def close(self) -> None:
        """Close the connection; stores still waiting for changes are woken and get `Unavailable`."""
        if self._closed:
            return
        self._closed = True
        self._notify()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        await loop.run_in_executor(None, self._executor.shutdown)

    # ---- internals -------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T], transaction: bool,
                   on_commit: Callable[[T], None] | None = None) -> T:
        if self._closed:
            raise Unavailable("the state database is closed")
        loop = asyncio.get_running_loop()
        call = self._in_transaction if transaction else self._plain
        try:
            inner = loop.run_in_executor(self._executor, call, fn)
        except RuntimeError as exc:  # the executor was shut down under us
            raise Unavailable("the state database is closed") from exc
        inner.add_done_callback(functools.partial(_finished, on_commit))
        try:
            # Shielded: a cancelled caller leaves the operation to finish (it may already be running).
            return await asyncio.shield(inner)
        except sqlite3.Error as exc:
            raise Unavailable(f"state database {self.path}: {exc}", delay_s=0.5) from exc

    def _plain(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self._conn)

    def _in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
                conn.execute("ROLLBACK")
            raise
        return result

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                log.exception("state change listener failed")

    async def _poll_external_changes(self) -> None:
        version: int | None = None
        while True:
            if not self._listeners:
                # Whatever changed while nobody listened is unknown: the first poll after that wakes
                # the new listeners once, in case another process committed just before the baseline.
                version = None
                await self._listening.wait()
            try:
                (current,) = await self.read(lambda conn: conn.execute("PRAGMA data_version").fetchone())
            except CodexError:
                if self._closed:
                    return
                log.warning("cannot poll the state database for changes", exc_info=True,
                            extra={"path": str(self.path)})
                current = version
            if current != version:
                self._notify()
            version = current
            await asyncio.sleep(self.poll_interval_s)


def _log_poller_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the state database's change poll stopped; other processes' changes are now seen only "
                  "by periodic re-reads", exc_info=task.exception())


def _finished(on_commit: Callable[[T], None] | None, done: asyncio.Future[T]) -> None:
    if done.cancelled():
        return
    if done.exception() is not None:  # retrieved here too, in case the caller was cancelled
        return
    if on_commit is not None:
        try:
            on_commit(done.result())
        except Exception:
            log.exception("state database commit callback failed")


async def open_state_db(path: Path, *, busy_timeout_s: float = 10.0, poll_interval_s: float = 0.25) -> StateDB:
    """`StateDB.open`: the database shared by `SqliteTaskStore`, `SqliteEventLog` and `SqliteTaskQueue`."""
    return await StateDB.open(path, busy_timeout_s=busy_timeout_s, poll_interval_s=poll_interval_s)
