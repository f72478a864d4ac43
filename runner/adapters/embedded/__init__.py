"""Embedded adapters: zero infrastructure, state on disk under `CODEX_SYS_HOME`.

`FsBlobStore` keeps blobs in a local folder. Tasks, events and the queue live in one SQLite database
(`open_state_db`), shared by `SqliteTaskStore`, `SqliteEventLog` and `SqliteTaskQueue`, so all three
survive a restart of the embedded runner. Every adapter has `async close()` and is an async context
manager; the state database is closed by whoever opened it, after the stores that use it.
"""

from runner.adapters.embedded.fs_blob_store import FsBlobStore, FsBlobWriter

__all__ = ["FsBlobStore", "FsBlobWriter"]
