"""`JetStreamEventLog` across processes (one connection each) and through NATS restarts: numbering stays
gap-free and unique, retried appends are stored once, watchers resume without a gap or a duplicate."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import Callable

import pytest
from servers import NatsServer

from runner.adapters.nats import JetStreamEventLog, JetStreamLimits, NatsSettings
from runner.domain.errors import Unavailable
from runner.domain.models import Event, LogLine, TaskResult, TaskState

from .conftest import OpenAdapters

pytestmark = pytest.mark.timeout(120)

log = logging.getLogger(__name__)


def new_task() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


def result() -> TaskResult:
    return TaskResult(TaskState.COMPLETED, "", 0, ())


async def collect(log: JetStreamEventLog, task_id: str, after_seq: int = 0) -> list[Event]:
    return [event async for event in log.watch(task_id, after_seq)]


async def test_appends_from_two_processes_to_one_task_are_gap_free_and_unique(open_adapters: OpenAdapters) -> None:
    logs = [(await open_adapters()).events for _ in range(2)]
    task = new_task()
    appended = await asyncio.gather(*(logs[i % 2].append(task, LogLine("agent", f"{i}")) for i in range(200)))
    assert sorted(e.seq for e in appended) == list(range(1, 201))
    stored = await logs[0].read(task)
    assert [e.seq for e in stored] == list(range(1, 201))
    assert sorted(e.payload.text for e in stored) == sorted(f"{i}" for i in range(200))  # type: ignore[union-attr]
    assert stored == sorted(appended, key=lambda e: e.seq)


async def test_reads_from_any_point_of_interleaved_tasks_start_at_the_right_event(open_adapters: OpenAdapters) -> None:
    log = (await open_adapters()).events
    tasks = [new_task() for _ in range(3)]
    for i in range(150):
        await asyncio.gather(*(log.append(t, LogLine("agent", f"{t}:{i}")) for t in tasks))
    for after in (0, 1, 2, 37, 64, 99, 148, 149, 150):
        for t in tasks:
            got = await log.read(t, after_seq=after, limit=5)
            assert [e.seq for e in got] == list(range(after + 1, min(after + 5, 150) + 1))
            assert all(e.payload == LogLine("agent", f"{t}:{e.seq - 1}") for e in got)
    fresh = (await open_adapters()).events  # another process, with nothing cached
    assert [e.seq for e in await fresh.read(tasks[1], after_seq=120)] == list(range(121, 151))


async def test_a_watcher_in_another_process_sees_appends_live(open_adapters: OpenAdapters) -> None:
    writer, reader = (await open_adapters()).events, (await open_adapters()).events
    task = new_task()
    seen: list[Event] = []

    async def watch() -> None:
        async for event in reader.watch(task):
            seen.append(event)

    watching = asyncio.create_task(watch())
    for i in range(20):
        appended = await writer.append(task, LogLine("agent", f"{i}"))
        async with asyncio.timeout(5):  # each one arrives before the next is appended
            while len(seen) < appended.seq:
                await asyncio.sleep(0.001)
    end = await writer.append(task, result())
    await asyncio.wait_for(watching, 5)
    assert [e.seq for e in seen] == list(range(1, 22))
    assert seen[-1] == end


async def test_appends_and_watchers_ride_through_a_nats_restart(
        nats_server_factory: Callable[[], NatsServer], open_adapters: OpenAdapters) -> None:
    server = nats_server_factory()
    writers = [(await open_adapters(server=server)).events for _ in range(2)]
    watcher = (await open_adapters(server=server)).events
    task = new_task()
    early = asyncio.create_task(collect(watcher, task))
    half = asyncio.Event()
    appended: list[Event] = []

    async def write(log: JetStreamEventLog, name: str) -> None:
        for i in range(150):
            appended.append(await log.append(task, LogLine("agent", f"{name}:{i}")))
            if len(appended) == 100:
                half.set()
            await asyncio.sleep(0.002)

    writing = [asyncio.create_task(write(log, str(n))) for n, log in enumerate(writers)]
    await half.wait()
    await asyncio.to_thread(server.restart, kill=True, down_s=1.0)
    late = asyncio.create_task(collect(watcher, task, after_seq=50))  # joins while the clients reconnect
    await asyncio.gather(*writing)
    end = await writers[0].append(task, result())
    assert sorted(e.seq for e in appended) == list(range(1, 301))
    stored = await watcher.read(task)
    assert stored == [*sorted(appended, key=lambda e: e.seq), end]
    assert await asyncio.wait_for(early, 30) == stored
    assert await asyncio.wait_for(late, 30) == stored[50:]


async def test_an_append_waits_out_an_outage_shorter_than_its_retry_time(
        nats_server_factory: Callable[[], NatsServer], open_adapters: OpenAdapters) -> None:
    server = nats_server_factory()
    log = (await open_adapters(server=server)).events
    task = new_task()
    await log.append(task, LogLine("runner", "before"))
    await asyncio.to_thread(server.stop, kill=True)
    appending = asyncio.create_task(log.append(task, LogLine("runner", "during")))
    await asyncio.sleep(1.5)
    assert not appending.done()
    await asyncio.to_thread(server.start)
    during = await asyncio.wait_for(appending, 30)
    assert during.seq == 2
    assert [e.payload for e in await log.read(task)] == [LogLine("runner", "before"), LogLine("runner", "during")]


async def test_an_append_gives_up_with_unavailable_after_its_retry_time(
        nats_server_factory: Callable[[], NatsServer], open_adapters: OpenAdapters) -> None:
    server = nats_server_factory()
    log = (await open_adapters(server=server, retry_s=1.0)).events
    await asyncio.to_thread(server.stop, kill=True)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="could not append an event to task"):
        await log.append(new_task(), LogLine("runner", "lost"))
    assert 0.9 <= time.monotonic() - started < 10


async def test_closing_the_log_ends_its_watchers_with_unavailable(open_adapters: OpenAdapters) -> None:
    log = (await open_adapters()).events
    task = new_task()
    await log.append(task, LogLine("runner", "one"))
    seen: list[Event] = []

    async def watch() -> None:
        async for event in log.watch(task):
            seen.append(event)

    watching = asyncio.create_task(watch())
    async with asyncio.timeout(5):
        while not seen:
            await asyncio.sleep(0.01)
    await log.close()
    with pytest.raises(Unavailable, match="closed"):
        await asyncio.wait_for(watching, 5)
    with pytest.raises(Unavailable):
        await log.append(task, LogLine("runner", "two"))


async def test_watch_latency_from_append_to_watcher(open_adapters: OpenAdapters) -> None:
    """A sanity run of the live path: every event arrives. Its figures are logged (`--log-cli-level=INFO`)
    for the record; bench/ is where latency is measured."""
    writer, reader = (await open_adapters()).events, (await open_adapters()).events
    task = new_task()
    arrived: dict[int, float] = {}

    async def watch() -> None:
        async for event in reader.watch(task):
            arrived[event.seq] = time.perf_counter()

    watching = asyncio.create_task(watch())
    await writer.append(task, LogLine("agent", "warm-up"))
    async with asyncio.timeout(5):
        while 1 not in arrived:
            await asyncio.sleep(0.001)
    sent: dict[int, float] = {}
    for i in range(200):
        started = time.perf_counter()
        event = await writer.append(task, LogLine("agent", f"line {i}"))
        sent[event.seq] = started
        await asyncio.sleep(0.002)
    await writer.append(task, result())
    await asyncio.wait_for(watching, 10)
    latencies = sorted((arrived[seq] - sent[seq]) * 1000 for seq in sent)
    assert len(latencies) == 200
    log.info("append to watcher latency", extra={"p50_ms": round(statistics.median(latencies), 3),
                                                 "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 3),
                                                 "max_ms": round(latencies[-1], 3)})


def test_the_retry_time_is_shorter_than_the_duplicate_window_by_default() -> None:
    assert NatsSettings().retry_s < JetStreamLimits().duplicate_window_s
