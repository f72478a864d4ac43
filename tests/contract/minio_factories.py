"""Factories of the minio adapters for the contract suites (see `conftest`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from runner.adapters.minio import MinioBlobStore, S3Settings
from runner.ports import BlobStore


def settings_for(server: Any, bucket: str) -> S3Settings:
    """Settings of a bucket on a `servers.MinioServer`."""
    return S3Settings(endpoint=server.endpoint, access_key=server.access_key, secret_key=server.secret_key,
                      bucket=bucket)


@asynccontextmanager
async def minio_blob_store(env: Any, *, max_blob_size: int) -> AsyncIterator[BlobStore]:
    """A fresh bucket (named after the test) on the session's MinIO server."""
    server = env.request.getfixturevalue("minio_server")
    store = await MinioBlobStore.open(settings_for(server, env.namespace), max_blob_size=max_blob_size,
                                      spool_dir=env.tmp_path)
    async with store:
        yield store


BLOB_STORES: list[Any] = [minio_blob_store]
TASK_STORES: list[Any] = []
EVENT_LOGS: list[Any] = []
TASK_QUEUES: list[Any] = []
