"""`ensure_layout`: the streams, consumer and bucket are created once, by any number of processes at once,
and follow changed limits where the server allows."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest
from servers import NatsServer

from runner.adapters.nats import JetStreamLimits, NatsConnection, ensure_layout
from runner.adapters.nats.layout import Layout, token

from .conftest import OpenAdapters, settings_for

pytestmark = pytest.mark.timeout(60)


def streams_of(layout: Layout) -> list[str]:
    return [layout.queue_stream, layout.advisories_stream, layout.tasks_stream, layout.events_stream]


async def test_every_object_exists_after_open(open_adapters: OpenAdapters) -> None:
    adapters = await open_adapters()
    js, layout = adapters.connection.js, adapters.layout
    for name in streams_of(layout):
        assert (await js.stream_info(name)).config.name == name
    consumer = await js.consumer_info(layout.queue_stream, layout.queue_consumer)
    assert consumer.config.ack_policy == "explicit"
    assert (consumer.config.ack_wait, consumer.config.max_deliver) == (60.0, 5)
    queue = (await js.stream_info(layout.queue_stream)).config
    assert queue.retention == "workqueue" and queue.duplicate_window == 120.0
    kv = await js.key_value(layout.tasks_bucket)  # a KV bucket to nats-py (and the nats CLI)
    assert (await kv.status()).bucket == layout.tasks_bucket


async def test_ensure_layout_twice_changes_nothing(open_adapters: OpenAdapters, prefix: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    adapters = await open_adapters()
    js = adapters.connection.js
    before = {name: (await js.stream_info(name)).config for name in streams_of(adapters.layout)}
    with caplog.at_level(logging.INFO, "runner.adapters.nats.layout"):
        again = await ensure_layout(js, prefix, JetStreamLimits())
    assert again == adapters.layout
    assert caplog.records == []  # nothing created, nothing updated
    assert {name: (await js.stream_info(name)).config for name in streams_of(again)} == before


async def test_processes_setting_up_at_once_all_succeed(nats_server: NatsServer, open_adapters: OpenAdapters,
                                                        prefix: str) -> None:
    connections = [await NatsConnection.connect(settings_for(nats_server, prefix)) for _ in range(4)]
    try:
        layouts = await asyncio.gather(*(ensure_layout(c.js, prefix, JetStreamLimits())
                                         for c in connections for _ in range(2)))
        assert set(layouts) == {Layout(prefix)}
    finally:
        for conn in connections:
            await conn.close()
    adapters = await open_adapters()  # and the result is usable
    assert (await adapters.connection.js.consumer_info(adapters.layout.queue_stream, "workers")).name == "workers"


async def test_changed_limits_update_the_streams_and_the_consumer(open_adapters: OpenAdapters, prefix: str) -> None:
    adapters = await open_adapters()
    js, layout = adapters.connection.js, adapters.layout
    changed = JetStreamLimits(ack_wait_s=30, max_deliver=3, max_ack_pending=50, events_max_age_s=3600,
                              events_max_bytes=1 << 30, duplicate_window_s=60, tasks_history=5)
    await ensure_layout(js, prefix, changed)
    consumer = (await js.consumer_info(layout.queue_stream, layout.queue_consumer)).config
    assert (consumer.ack_wait, consumer.max_deliver, consumer.max_ack_pending) == (30.0, 3, 50)
    events = (await js.stream_info(layout.events_stream)).config
    assert (events.max_age, events.max_bytes, events.duplicate_window) == (3600.0, 1 << 30, 60.0)
    assert (await js.stream_info(layout.tasks_stream)).config.max_msgs_per_subject == 5


async def test_a_change_the_server_refuses_is_logged_and_the_stream_kept(
        open_adapters: OpenAdapters, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    adapters = await open_adapters()
    js = adapters.connection.js
    with caplog.at_level(logging.WARNING, "runner.adapters.nats.layout"):
        await ensure_layout(js, prefix, JetStreamLimits(storage="memory"))
    refused = [r for r in caplog.records if "refuses" in r.getMessage()]
    assert {r.stream for r in refused} == set(streams_of(adapters.layout))  # type: ignore[attr-defined]
    assert (await js.stream_info(adapters.layout.events_stream)).config.storage == "file"


async def test_streams_hold_nothing_of_another_prefix(open_adapters: OpenAdapters, nats_server: NatsServer) -> None:
    mine = await open_adapters()
    other = Layout("other" + mine.layout.prefix)
    assert not set(streams_of(mine.layout)) & set(streams_of(other))
    nc = await nats.connect(nats_server.url)
    try:
        # A publish to the other prefix's subjects is not stored by this prefix's streams.
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            await nc.jetstream().publish(other.events_subject("t1"), b"{}", timeout=1)
    finally:
        await nc.close()


@pytest.mark.parametrize(("text", "expected"), [
    ("t0123456789abcdef", "t0123456789abcdef"),
    ("tenant-a_1", "tenant-a_1"),
    ("a.b", "=612e62"),
    ("*", "=2a"),
    ("with space", "=77697468207370616365"),
    ("", "="),
    ("é", "=c3a9"),
])
def test_tokens_keep_safe_names_and_hex_encode_the_rest(text: str, expected: str) -> None:
    assert token(text) == expected
