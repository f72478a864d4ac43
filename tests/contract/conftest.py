"""Adapter factories for the contract suites: one suite per port, run against every adapter of it.

Each suite is written against the port's `Protocol` only and gets its adapter from a fixture
parametrised by the factories below. To run a suite against another adapter (NATS JetStream, MinIO),
write a factory with the same signature and append it to the port's list: the factory receives an
`AdapterEnv` (the pytest request, for session fixtures such as a running server via
`env.request.getfixturevalue`, a temp folder, and a name unique to the test for its stream, bucket or KV)
and yields a ready adapter, closing it on exit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from runner.adapters.embedded import (
    FsBlobStore,
    SqliteEventLog,
    SqliteTaskQueue,
    SqliteTaskStore,
    open_state_db,
)
from runner.ports import BlobStore, EventLog, TaskQueue, TaskStore

from . import minio_factories, nats_factories

# The blob size limit the blob-store suite runs with.
MAX_BLOB_SIZE = 4 << 20


@dataclass(frozen=True)
class AdapterEnv:
    request: pytest.FixtureRequest
    tmp_path: Path
    namespace: str  # unique per test: a stream, bucket or KV name prefix


class BlobStoreFactory(Protocol):
    def __call__(self, env: AdapterEnv, *, max_blob_size: int) -> AbstractAsyncContextManager[BlobStore]: ...


class TaskStoreFactory(Protocol):
    def __call__(self, env: AdapterEnv) -> AbstractAsyncContextManager[TaskStore]: ...


class EventLogFactory(Protocol):
    def __call__(self, env: AdapterEnv) -> AbstractAsyncContextManager[EventLog]: ...


class TaskQueueFactory(Protocol):
    def __call__(self, env: AdapterEnv, *, ack_wait_s: float,
                 max_deliver: int) -> AbstractAsyncContextManager[TaskQueue]: ...


# ---- embedded adapters ----------------------------------------------------------------------------------


@asynccontextmanager
async def fs_blob_store(env: AdapterEnv, *, max_blob_size: int) -> AsyncIterator[BlobStore]:
    async with FsBlobStore(env.tmp_path / "blobs", max_blob_size) as store:
        yield store


@asynccontextmanager
async def sqlite_task_store(env: AdapterEnv) -> AsyncIterator[TaskStore]:
    async with await open_state_db(env.tmp_path / "state.db") as db, SqliteTaskStore(db) as store:
        yield store


@asynccontextmanager
async def sqlite_event_log(env: AdapterEnv) -> AsyncIterator[EventLog]:
    async with await open_state_db(env.tmp_path / "state.db") as db, SqliteEventLog(db) as log:
        yield log


@asynccontextmanager
async def sqlite_task_queue(env: AdapterEnv, *, ack_wait_s: float, max_deliver: int) -> AsyncIterator[TaskQueue]:
    async with await open_state_db(env.tmp_path / "state.db") as db, \
            SqliteTaskQueue(db, ack_wait_s=ack_wait_s, max_deliver=max_deliver) as queue:
        yield queue


# The distributed adapters' factories live beside this file (`nats_factories`, `minio_factories`).
BLOB_STORES: list[BlobStoreFactory] = [fs_blob_store, *minio_factories.BLOB_STORES]
TASK_STORES: list[TaskStoreFactory] = [sqlite_task_store, *nats_factories.TASK_STORES]
EVENT_LOGS: list[EventLogFactory] = [sqlite_event_log, *nats_factories.EVENT_LOGS]
TASK_QUEUES: list[TaskQueueFactory] = [sqlite_task_queue, *nats_factories.TASK_QUEUES]


def _ids(factory: object) -> str:
    return getattr(factory, "__name__", repr(factory))


# ---- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
def adapter_env(request: pytest.FixtureRequest, tmp_path: Path) -> AdapterEnv:
    return AdapterEnv(request=request, tmp_path=tmp_path, namespace=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BLOB_STORES, ids=_ids)
async def blob_store(request: pytest.FixtureRequest, adapter_env: AdapterEnv) -> AsyncIterator[BlobStore]:
    async with request.param(adapter_env, max_blob_size=MAX_BLOB_SIZE) as store:
        yield store


@pytest.fixture(params=TASK_STORES, ids=_ids)
async def task_store(request: pytest.FixtureRequest, adapter_env: AdapterEnv) -> AsyncIterator[TaskStore]:
    async with request.param(adapter_env) as store:
        yield store


@pytest.fixture(params=EVENT_LOGS, ids=_ids)
async def event_log(request: pytest.FixtureRequest, adapter_env: AdapterEnv) -> AsyncIterator[EventLog]:
    async with request.param(adapter_env) as log:
        yield log


MakeQueue = Callable[..., Awaitable[TaskQueue]]


@pytest.fixture(params=TASK_QUEUES, ids=_ids)
async def make_queue(request: pytest.FixtureRequest, adapter_env: AdapterEnv) -> AsyncIterator[MakeQueue]:
    """`await make_queue(ack_wait_s=..., max_deliver=...)`: a fresh, empty queue with those settings."""
    factory: TaskQueueFactory = request.param
    async with AsyncExitStack() as stack:
        made = 0

        async def make(*, ack_wait_s: float = 30.0, max_deliver: int = 5) -> TaskQueue:
            nonlocal made
            made += 1
            env = AdapterEnv(adapter_env.request, adapter_env.tmp_path / f"q{made}", f"{adapter_env.namespace}q{made}")
            env.tmp_path.mkdir()
            return await stack.enter_async_context(factory(env, ack_wait_s=ack_wait_s, max_deliver=max_deliver))

        yield make
