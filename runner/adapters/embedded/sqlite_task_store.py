"""`TaskStore` on the state database: task records as JSON rows with a revision for compare-and-set.

`update` is one `UPDATE ... WHERE id = ? AND revision = ?`: it changes a row only if nobody changed it
since the caller read it, whichever process the other writer is in, and the revision goes up by one with
every successful write. `list` reads the `(tenant, created_at)` index newest first (ties in insertion
order, newest first); the state filter uses the `state` column, kept equal to the record's state.
"""

from __future__ import annotations

import builtins
import dataclasses
import sqlite3
from collections.abc import Sequence

from runner.adapters.embedded.db import StateDB
from runner.adapters.json_codec import decode_task, encode_task
from runner.adapters.task_revisions import already_exists, conflict, first_version, next_version, not_found
from runner.closing import AsyncClosing
from runner.domain.errors import Unavailable
from runner.domain.models import TaskRecord, TaskState


def _decode_row(body: str, revision: int) -> TaskRecord:
    record = decode_task(body)
    return record if record.revision == revision else dataclasses.replace(record, revision=revision)


class SqliteTaskStore(AsyncClosing):
    """Task records in the `tasks` table of a `StateDB` (which the caller opens and closes)."""

    def __init__(self, db: StateDB) -> None:
        self._db = db
        self._closed = False

    async def close(self) -> None:
        """Stop accepting calls; the shared `StateDB` stays open."""
        self._closed = True

    async def create(self, record: TaskRecord) -> TaskRecord:
        self._check_open()
        stored = first_version(record)
        body = encode_task(stored)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO tasks (id, tenant, state, created_at, revision, body) VALUES (?, ?, ?, ?, 1, ?)",
                    (stored.id, stored.tenant, stored.state.name, stored.created_at, body))
            except sqlite3.IntegrityError:
                raise already_exists(stored.id) from None

        await self._db.write(insert)
        return stored

    async def get(self, task_id: str) -> TaskRecord:
        self._check_open()

        def select(conn: sqlite3.Connection) -> TaskRecord:
            row = conn.execute("SELECT body, revision FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                raise not_found(task_id)
            return _decode_row(row[0], row[1])

        return await self._db.read(select)

    async def update(self, record: TaskRecord) -> TaskRecord:
        self._check_open()
        stored = next_version(record)
        body = encode_task(stored)

        def compare_and_set(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE tasks SET tenant = ?, state = ?, created_at = ?, revision = ?, body = ? "
                "WHERE id = ? AND revision = ?",
                (stored.tenant, stored.state.name, stored.created_at, stored.revision, body,
                 record.id, record.revision)).rowcount
            if changed:
                return
            row = conn.execute("SELECT revision FROM tasks WHERE id = ?", (record.id,)).fetchone()
            if row is None:
                raise not_found(record.id)
            raise conflict(record, row[0])

        await self._db.write(compare_and_set)
        return stored

    async def list(self, tenant: str, limit: int = 50, states: Sequence[TaskState] = ()) -> list[TaskRecord]:
        self._check_open()
        if limit <= 0:
            return []
        sql = "SELECT body, revision FROM tasks WHERE tenant = ?"
        params: list[object] = [tenant]
        if states:
            names = sorted({s.name for s in states})
            sql += f" AND state IN ({', '.join('?' * len(names))})"
            params.extend(names)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        params.append(limit)

        def select(conn: sqlite3.Connection) -> list[TaskRecord]:
            return [_decode_row(body, revision) for body, revision in conn.execute(sql, params)]

        return await self._db.read(select)

    async def list_created_since(self, tenant: str, since: float) -> builtins.list[TaskRecord]:
        self._check_open()
        sql = ("SELECT body, revision FROM tasks WHERE tenant = ? AND created_at >= ? "
               "ORDER BY created_at, rowid")

        def select(conn: sqlite3.Connection) -> builtins.list[TaskRecord]:
            return [_decode_row(body, revision) for body, revision in conn.execute(sql, (tenant, since))]

        return await self._db.read(select)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the task store is closed")
