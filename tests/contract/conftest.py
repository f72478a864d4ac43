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
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from runner.adapters.embedded import FsBlobStore
from runner.ports import BlobStore

# The blob size limit the blob-store suite runs with.
MAX_BLOB_SIZE = 4 << 20


@dataclass(frozen=True)
class AdapterEnv:
    request: pytest.FixtureRequest
    tmp_path: Path
    namespace: str  # unique per test: a stream, bucket or KV name prefix


class BlobStoreFactory(Protocol):
    def __call__(self, env: AdapterEnv, *, max_blob_size: int) -> AbstractAsyncContextManager[BlobStore]: ...


# ---- embedded adapters ----------------------------------------------------------------------------------


@asynccontextmanager
async def fs_blob_store(env: AdapterEnv, *, max_blob_size: int) -> AsyncIterator[BlobStore]:
    async with FsBlobStore(env.tmp_path / "blobs", max_blob_size) as store:
        yield store


# Append the distributed adapters' factories here.
BLOB_STORES: list[BlobStoreFactory] = [fs_blob_store]


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

