"""`NatsConnection`: a bounded first connect, reconnects forever after it, state changes logged and
announced, nats-py errors wrapped into `Unavailable`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import nats.errors
import pytest
from servers import NatsServer, free_port

from runner.adapters.nats import NatsConnection, NatsSettings
from runner.adapters.nats.connection import ConnectionChange, is_transient
from runner.domain.errors import InvalidArgument, Unavailable

from .conftest import settings_for

pytestmark = pytest.mark.timeout(60)


async def test_connecting_where_no_server_listens_raises_unavailable_within_the_timeout() -> None:
    settings = NatsSettings(servers=(f"nats://127.0.0.1:{free_port()}",), connect_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"NATS at nats://127\.0\.0\.1:\d+ did not accept a connection \(last "
                                          r"error: ConnectionRefusedError.*\) within 1 s") as caught:
        await NatsConnection.connect(settings)
    assert time.monotonic() - started < 5
    assert isinstance(caught.value.__cause__, TimeoutError)


async def test_tls_asked_for_but_not_offered_is_refused(nats_server: NatsServer) -> None:
    settings = NatsSettings(servers=(nats_server.url.replace("nats://", "tls://"),), connect_timeout_s=2.0)
    with pytest.raises(Unavailable, match="does not offer TLS"):
        await NatsConnection.connect(settings)


async def test_a_restarted_server_is_reconnected_to_and_every_change_is_logged_and_announced(
        nats_server_factory: Callable[[], NatsServer], caplog: pytest.LogCaptureFixture) -> None:
    server = nats_server_factory()
    changes: list[ConnectionChange] = []
    with caplog.at_level(logging.INFO, "runner.adapters.nats.connection"):
        conn = await NatsConnection.connect(settings_for(server, "conn", name="worker-7"))
        stop = conn.on_change(changes.append)
        await asyncio.to_thread(server.restart, kill=True, down_s=0.5)
        assert await conn.wait_connected(10)
        assert conn.connected
        stop()
        await conn.close()
        await conn.close()  # twice is harmless
    assert changes[:2] == ["disconnected", "reconnected"]
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "connected to NATS"
    assert caplog.records[0].connection_name == "worker-7"  # type: ignore[attr-defined]
    assert "disconnected from NATS; reconnecting" in messages
    assert "reconnected to NATS" in messages
    assert messages[-1] == "NATS connection closed"


async def test_unavailable_names_the_server_and_what_failed_and_keeps_the_cause(connection: NatsConnection) -> None:
    cause = nats.errors.TimeoutError()
    error = connection.unavailable("append event 3 to task t1", cause)
    assert str(error).startswith(f"NATS at {connection.url} could not append event 3 to task t1")
    assert error.delay_s > 0
    await connection.close()
    assert "the NATS connection is closed" in str(connection.unavailable("read task t1"))


def test_timeouts_and_unavailable_jetstream_are_transient_other_api_errors_are_not() -> None:
    assert is_transient(nats.errors.TimeoutError())
    assert is_transient(nats.errors.NoRespondersError())
    assert is_transient(nats.js.errors.ServiceUnavailableError())
    assert is_transient(nats.js.errors.APIError(code=503))
    assert not is_transient(nats.js.errors.BadRequestError(code=400, err_code=10071))
    assert not is_transient(nats.errors.ConnectionClosedError())


@pytest.mark.parametrize("changes", [{"prefix": "a.b"}, {"prefix": ""}, {"servers": ()},
                                     {"tls_cert": "/c.pem"}, {"retry_s": -1}])
def test_settings_refuse_what_cannot_work(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        NatsSettings(**changes)  # type: ignore[arg-type]
