"""Fixtures of the MinIO adapter's tests: a fresh bucket per test on the session's MinIO server, and a raw
client to look at (or damage) what the store wrote. The folder is not named `minio`: `tests/` is on
`sys.path`, and a `tests/minio` package would shadow the `minio` library."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from minio import Minio
from servers import MinioServer

from runner.adapters.minio import MinioBlobStore, S3Settings

MAX_BLOB_SIZE = 64 << 20


def settings_of(server: MinioServer, bucket: str | None = None, **changes: object) -> S3Settings:
    return S3Settings(endpoint=server.endpoint, access_key=server.access_key, secret_key=server.secret_key,
                      bucket=bucket or f"t{uuid.uuid4().hex[:12]}", **changes)  # type: ignore[arg-type]


def raw_client(server: MinioServer) -> Minio:
    return Minio(server.endpoint, access_key=server.access_key, secret_key=server.secret_key, secure=False,
                 region="us-east-1")


@pytest.fixture
def settings(minio_server: MinioServer) -> S3Settings:
    return settings_of(minio_server)


@pytest.fixture
async def store(settings: S3Settings, tmp_path: Path) -> AsyncIterator[MinioBlobStore]:
    async with await MinioBlobStore.open(settings, max_blob_size=MAX_BLOB_SIZE, spool_dir=tmp_path) as opened:
        yield opened


@pytest.fixture
def raw(minio_server: MinioServer) -> Minio:
    return raw_client(minio_server)
