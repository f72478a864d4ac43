"""Fixtures of the fault tests: distributed deployments of real processes on real NATS and MinIO, with
servers of their own when a test stops or restarts them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import CODEX, Provider, codex_env, provider_factory
from e2e.deployments import Distributed
from servers import MinioServer, NatsServer

__all__ = ["cluster_factory", "provider_factory"]

MakeCluster = Callable[..., Awaitable[Distributed]]


@pytest.fixture
async def cluster_factory(short_tmp: Path, request: pytest.FixtureRequest) -> AsyncIterator[MakeCluster]:
    """`await cluster_factory(provider, nats=..., minio=...)`: a deployment with no processes yet, on the
    session's servers unless the test passes its own."""
    made: list[Distributed] = []

    async def make(provider: Provider, *, nats: NatsServer | None = None, minio: MinioServer | None = None,
                   **options: Any) -> Distributed:
        root = short_tmp / f"cluster{len(made)}"
        root.mkdir()
        base = {k: v for k, v in codex_env(root / "unused", provider).items() if k != "CODEX_SYS_HOME"}
        cluster = Distributed(CODEX, root, nats or request.getfixturevalue("nats_server"),
                              minio or request.getfixturevalue("minio_server"), base, **options)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()
