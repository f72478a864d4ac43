"""The tables of the embedded runner's state database, and how a database is brought up to date.

The schema version is SQLite's `user_version`. `migrate` runs in one `BEGIN IMMEDIATE` transaction, so
several processes opening the same file at once apply each step exactly once, and a database written
by a newer codex-sys is refused rather than misread. A new version appends a step to `_STEPS`; steps
are never edited once released.

Tables (one row per task in `tasks` and `queue`, one per event in `events`):

* `tasks`: the record as JSON (`json_codec`) plus the columns the store queries on: tenant, state,
  created_at (newest-first listing) and revision (compare-and-set).
* `events`: keyed by (task_id, seq); seq is assigned as max+1 inside the appending transaction.
* `queue`: one row per queued task until it is acked or termed. `visible_at` is when it may next be
  delivered (enqueue time, a lease's deadline, or a nak's delay); `lease` identifies the current
  delivery; `exhausted_at` is set once `max_deliver` deliveries were used up.
"""

from __future__ import annotations

import sqlite3

from runner.domain.errors import FailedPrecondition

_STEPS: tuple[tuple[str, ...], ...] = (
    (  # version 1
        """CREATE TABLE tasks (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            revision INTEGER NOT NULL,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX tasks_by_tenant ON tasks (tenant, created_at)",
        """CREATE TABLE events (
            task_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            time REAL NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (task_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE queue (
            task_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            enqueued_at REAL NOT NULL,
            visible_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            lease TEXT,
            exhausted_at REAL
        )""",
        "CREATE INDEX queue_ready ON queue (visible_at) WHERE exhausted_at IS NULL",
    ),
)

SCHEMA_VERSION = len(_STEPS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to `SCHEMA_VERSION`; returns the version it was at."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        if found > SCHEMA_VERSION:
            raise FailedPrecondition(
                f"the state database has schema version {found}, newer than this codex-sys understands "
                f"({SCHEMA_VERSION}); upgrade codex-sys or point CODEX_SYS_HOME elsewhere")
        for steps in _STEPS[found:]:
            for statement in steps:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(found)
