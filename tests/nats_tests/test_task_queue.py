"""`JetStreamTaskQueue` across processes (one connection each) and through a NATS outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from servers import NatsServer

from runner.adapters.nats import JetStreamDelivery, JetStreamLimits
from runner.domain.errors import Unavailable
from runner.ports import QueuedTask

from .conftest import OpenAdapters

pytestmark = pytest.mark.timeout(60)


def task(tenant: str = "tenant-a") -> QueuedTask:
    return QueuedTask(task_id=f"t{uuid.uuid4().hex[:16]}", tenant=tenant)


async def test_enqueue_from_two_connections_is_stored_once(open_adapters: OpenAdapters) -> None:
    one, two = await open_adapters(), await open_adapters()
    queued = task()
    await asyncio.gather(one.queue.enqueue(queued), two.queue.enqueue(queued), one.queue.enqueue(queued))
    info = await one.connection.js.stream_info(one.layout.queue_stream)
    assert info.state.messages == 1
    delivery = await two.queue.receive(timeout_s=5)
    assert delivery is not None and delivery.task == queued
    assert await one.queue.receive(timeout_s=0.3) is None
    await delivery.ack()


async def test_receivers_on_separate_connections_never_get_the_same_delivery(open_adapters: OpenAdapters) -> None:
    processes = [await open_adapters() for _ in range(3)]
    queued = [task() for _ in range(60)]
    got: list[JetStreamDelivery] = []

    async def worker(index: int) -> None:
        queue = processes[index % len(processes)].queue
        while (delivery := await queue.receive(timeout_s=0.5)) is not None:
            got.append(delivery)
            await delivery.ack()

    workers = [asyncio.create_task(worker(i)) for i in range(9)]
    for q in queued:
        await processes[0].queue.enqueue(q)
    await asyncio.gather(*workers)
    assert sorted(d.task.task_id for d in got) == sorted(q.task_id for q in queued)
    assert len({d.stream_seq for d in got}) == len(queued)
    assert all(d.attempt == 1 for d in got)


async def test_max_deliveries_advisory_makes_the_task_exhausted_and_discard_removes_message_and_advisory(
        open_adapters: OpenAdapters) -> None:
    adapters = await open_adapters(limits=JetStreamLimits(ack_wait_s=0.3, max_deliver=2))
    queue, js, layout = adapters.queue, adapters.connection.js, adapters.layout
    queued, other = task(), task()
    await queue.enqueue(queued)
    for attempt in (1, 2):
        delivery = await queue.receive(timeout_s=5)
        assert delivery is not None and delivery.attempt == attempt
    assert await queue.receive(timeout_s=0.8) is None  # asking for work after the deadline: the advisory
    deadline = time.monotonic() + 5
    while not (exhausted := await queue.exhausted()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert [(e.task, e.attempts) for e in exhausted] == [(queued, 2)]
    # The message stays in the work-queue stream, undelivered; its advisory is captured.
    assert (await js.stream_info(layout.queue_stream)).state.messages == 1
    assert (await js.stream_info(layout.advisories_stream)).state.messages == 1
    # Another process sees the same and may discard it.
    other_process = await open_adapters(limits=JetStreamLimits(ack_wait_s=0.3, max_deliver=2))
    assert [e.task for e in await other_process.queue.exhausted()] == [queued]
    await queue.enqueue(other)
    assert await other_process.queue.discard(queued.task_id)
    assert (await js.stream_info(layout.advisories_stream)).state.messages == 0
    assert (await js.stream_info(layout.queue_stream)).state.messages == 1  # only the other task
    assert await queue.exhausted() == []
    assert not await queue.discard(queued.task_id)
    delivery = await queue.receive(timeout_s=5)
    assert delivery is not None and delivery.task == other


async def test_an_advisory_whose_message_is_gone_is_dropped(open_adapters: OpenAdapters) -> None:
    adapters = await open_adapters(limits=JetStreamLimits(ack_wait_s=0.3, max_deliver=1))
    queue, js, layout = adapters.queue, adapters.connection.js, adapters.layout
    await queue.enqueue(task())
    delivery = await queue.receive(timeout_s=5)
    assert delivery is not None
    assert await queue.receive(timeout_s=0.8) is None
    deadline = time.monotonic() + 5
    while (await js.stream_info(layout.advisories_stream)).state.messages == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await js.delete_msg(layout.queue_stream, delivery.stream_seq)  # e.g. discarded by another runner
    assert await queue.exhausted() == []
    assert (await js.stream_info(layout.advisories_stream)).state.messages == 0


async def test_a_delivery_arriving_after_its_receiver_left_goes_to_the_next_receiver_at_once(
        open_adapters: OpenAdapters) -> None:
    adapters = await open_adapters(limits=JetStreamLimits(ack_wait_s=30))
    queue = adapters.queue
    leaving = asyncio.ensure_future(queue.receive(timeout_s=10))
    await asyncio.sleep(0.1)
    leaving.cancel()  # its pull request is still waiting on the server
    queued = task()
    await queue.enqueue(queued)
    started = time.monotonic()
    delivery = await queue.receive(timeout_s=5)
    assert delivery is not None and delivery.task == queued
    assert delivery.attempt == 2  # the first went to the abandoned pull and was handed back
    assert time.monotonic() - started < 5  # not after the 30 s ack deadline
    await delivery.ack()


async def test_receive_with_timeout_0_returns_at_once(open_adapters: OpenAdapters) -> None:
    queue = (await open_adapters()).queue
    started = time.monotonic()
    for _ in range(10):
        assert await queue.receive(timeout_s=0) is None
    assert time.monotonic() - started < 1.5


async def test_during_an_outage_receive_raises_unavailable_and_nothing_is_lost(
        nats_server_factory: Callable[[], NatsServer], open_adapters: OpenAdapters) -> None:
    server = nats_server_factory()
    adapters = await open_adapters(server=server, limits=JetStreamLimits(ack_wait_s=2))
    queue = adapters.queue
    queued = task()
    await queue.enqueue(queued)
    first = await queue.receive(timeout_s=5)
    assert first is not None
    waiting = asyncio.ensure_future(queue.receive(timeout_s=20))
    await asyncio.sleep(0.1)
    await asyncio.to_thread(server.stop, kill=True)
    with pytest.raises(Unavailable):  # the waiting receiver learns of the outage at once
        await asyncio.wait_for(waiting, 5)
    started = time.monotonic()
    calls = 0
    while time.monotonic() - started < 1:
        calls += 1
        with pytest.raises(Unavailable):
            await queue.receive(timeout_s=5)
        await asyncio.sleep(0.1)  # as the worker does, with the error's delay
    assert calls <= 11  # raised at once, no spinning inside receive
    await asyncio.to_thread(server.start)
    assert await adapters.connection.wait_connected(15)
    again = None
    deadline = time.monotonic() + 20
    while again is None and time.monotonic() < deadline:  # the unacked delivery comes back after its deadline
        try:
            again = await queue.receive(timeout_s=3)
        except Unavailable:
            await asyncio.sleep(0.2)  # JetStream still recovering
    assert again is not None and again.task == queued and again.attempt == 2
    await again.ack()
