"""Fixtures of the NATS adapters' own tests: adapters on a prefix of their own per test, on the session's
nats-server or on a private one the test may kill and restart. The folder is not named `nats`: `tests/`
is on `sys.path`, and a `tests/nats` package would shadow the `nats` library."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
from contract.nats_factories import delete_layout
from servers import NatsServer

from runner.adapters.nats import JetStreamLimits, NatsAdapters, NatsConnection, NatsSettings, open_nats_adapters

OpenAdapters = Callable[..., Awaitable[NatsAdapters]]


def settings_for(server: NatsServer, prefix: str, **changes: object) -> NatsSettings:
    return NatsSettings(**{"servers": (server.url,), "prefix": prefix, "name": "nats-tests",  # type: ignore[arg-type]
                           **changes})


@pytest.fixture
def prefix() -> str:
    """Names of this test's streams, consumer and bucket."""
    return f"n{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def open_adapters(nats_server: NatsServer, prefix: str) -> AsyncIterator[OpenAdapters]:
    """`await open_adapters(server=..., limits=..., **settings)`: adapters on their own connection, all on
    this test's prefix (on the session server unless given another); closed, and their streams deleted,
    at the end of the test."""
    async with AsyncExitStack() as stack:
        opened: list[NatsAdapters] = []

        async def open_(server: NatsServer | None = None, limits: JetStreamLimits | None = None,
                        **settings: object) -> NatsAdapters:
            adapters = await open_nats_adapters(settings_for(server or nats_server, prefix, **settings), limits)
            stack.push_async_callback(adapters.close)
            opened.append(adapters)
            return adapters

        yield open_
        if opened and opened[0].connection.connected:
            await delete_layout(opened[0])


@pytest.fixture
async def connection(nats_server: NatsServer, prefix: str) -> AsyncIterator[NatsConnection]:
    async with await NatsConnection.connect(settings_for(nats_server, prefix)) as conn:
        yield conn
