"""Embedded adapters: zero infrastructure, state on disk under `CODEX_SYS_HOME`.

`FsBlobStore` keeps blobs in a local folder. Tasks, events and the queue live in one SQLite database
(`open_state_db`), shared by `SqliteTaskStore`, `SqliteEventLog` and `SqliteTaskQueue`, so all three
survive a restart of the embedded runner. Every adapter has `async close()` and is an async context
manager; the state database is closed by whoever opened it, after the stores that use it:

    async with await open_state_db(home.state_db) as db, SqliteTaskStore(db) as tasks, \\
            SqliteEventLog(db) as events, SqliteTaskQueue(db) as queue, \\
            FsBlobStore(home.blobs, max_blob_size) as blobs:
        ...
"""

from runner.adapters.embedded.db import StateDB, open_state_db
from runner.adapters.embedded.fs_blob_store import FsBlobStore
from runner.adapters.embedded.fs_blob_writer import FsBlobWriter
from runner.adapters.embedded.sqlite_event_log import SqliteEventLog
from runner.adapters.embedded.sqlite_task_queue import SqliteDelivery, SqliteTaskQueue
from runner.adapters.embedded.sqlite_task_store import SqliteTaskStore
from runner.adapters.json_codec import DecodeError
from runner.ports import ExhaustedTask  # re-exported: it used to live in sqlite_task_queue

__all__ = [
    "DecodeError",
    "ExhaustedTask",
    "FsBlobStore",
    "FsBlobWriter",
    "SqliteDelivery",
    "SqliteEventLog",
    "SqliteTaskQueue",
    "SqliteTaskStore",
    "StateDB",
    "open_state_db",
]
