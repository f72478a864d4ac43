"""Contract of `EventLog`, for every adapter in `conftest.EVENT_LOGS`."""

from __future__ import annotations

import asyncio
import random

import pytest

from runner.domain.models import Event, LogLine, TaskResult, TaskState
from runner.ports import EventLog

from .samples import every_payload, new_id, result

pytestmark = pytest.mark.timeout(30)


async def append_lines(log: EventLog, task_id: str, count: int, start: int = 0) -> list[Event]:
    return [await log.append(task_id, LogLine("agent", f"line {i}")) for i in range(start, start + count)]


async def collect(log: EventLog, task_id: str, after_seq: int = 0) -> list[Event]:
    return [event async for event in log.watch(task_id, after_seq)]


# ---- append and read ------------------------------------------------------------------------------------


async def test_append_numbers_events_from_1(event_log: EventLog) -> None:
    task = new_id()
    events = await append_lines(event_log, task, 3)
    assert [e.seq for e in events] == [1, 2, 3]
    assert all(e.task_id == task for e in events)
    assert events[0].time <= events[1].time <= events[2].time
    assert await event_log.read(task) == events


async def test_every_payload_kind_reads_back_equal(event_log: EventLog) -> None:
    task = new_id()
    payloads = every_payload()
    appended = [await event_log.append(task, p) for p in payloads]
    stored = await event_log.read(task)
    assert [e.payload for e in stored] == payloads
    assert stored == appended


async def test_read_after_seq_and_limit(event_log: EventLog) -> None:
    task = new_id()
    events = await append_lines(event_log, task, 10)
    assert await event_log.read(task, after_seq=7) == events[7:]
    assert await event_log.read(task, after_seq=2, limit=3) == events[2:5]
    assert await event_log.read(task, after_seq=10) == []
    assert await event_log.read(new_id()) == []


async def test_sequences_are_per_task(event_log: EventLog) -> None:
    a, b = new_id(), new_id()
    await append_lines(event_log, a, 3)
    first_b = await event_log.append(b, LogLine("runner", "b"))
    assert first_b.seq == 1
    assert (await event_log.append(a, LogLine("runner", "a"))).seq == 4


async def test_concurrent_appends_get_gap_free_unique_numbers(event_log: EventLog) -> None:
    tasks = [new_id(), new_id()]
    appended = await asyncio.gather(*(event_log.append(tasks[i % 2], LogLine("agent", f"{i}")) for i in range(300)))
    for task in tasks:
        seqs = sorted(e.seq for e in appended if e.task_id == task)
        assert seqs == list(range(1, 151))
        stored = await event_log.read(task)
        assert [e.seq for e in stored] == list(range(1, 151))
        assert {e.payload for e in stored} == {e.payload for e in appended if e.task_id == task}


# ---- watch ------------------------------------------------------------------------------------------------


async def test_watch_from_0_replays_everything_and_ends_after_the_result(event_log: EventLog) -> None:
    task = new_id()
    lines = await append_lines(event_log, task, 5)
    end = await event_log.append(task, result())
    await event_log.append(task, LogLine("runner", "after the result"))
    assert await collect(event_log, task) == [*lines, end]


async def test_watch_from_the_middle(event_log: EventLog) -> None:
    task = new_id()
    lines = await append_lines(event_log, task, 5)
    end = await event_log.append(task, result(TaskState.FAILED))
    assert await collect(event_log, task, after_seq=3) == [*lines[3:], end]
    assert await collect(event_log, task, after_seq=5) == [end]


async def test_watch_replays_more_than_a_page(event_log: EventLog) -> None:
    task = new_id()
    await asyncio.gather(*(event_log.append(task, LogLine("agent", str(i))) for i in range(1500)))
    await event_log.append(task, result())
    seen = await collect(event_log, task)
    assert [e.seq for e in seen] == list(range(1, 1502))


async def test_watch_follows_live_appends(event_log: EventLog) -> None:
    task = new_id()
    await append_lines(event_log, task, 2)
    received: list[Event] = []
    caught_up = asyncio.Event()

    async def watcher() -> None:
        async for event in event_log.watch(task):
            received.append(event)
            if event.seq == 2:
                caught_up.set()

    watching = asyncio.create_task(watcher())
    await asyncio.wait_for(caught_up.wait(), 5)
    for i in range(3):
        appended = await event_log.append(task, LogLine("agent", f"live {i}"))
        async with asyncio.timeout(5):  # delivered promptly, without waiting for a poll
            while received[-1].seq != appended.seq:
                await asyncio.sleep(0.001)
    await event_log.append(task, result())
    await asyncio.wait_for(watching, 5)
    assert [e.seq for e in received] == [1, 2, 3, 4, 5, 6]
    assert isinstance(received[-1].payload, TaskResult)


async def test_watch_of_a_task_with_no_events_yet_waits_for_them(event_log: EventLog) -> None:
    task = new_id()
    watching = asyncio.create_task(collect(event_log, task))
    await asyncio.sleep(0.05)
    assert not watching.done()
    first = await event_log.append(task, LogLine("runner", "first"))
    end = await event_log.append(task, result())
    assert await asyncio.wait_for(watching, 5) == [first, end]


async def test_a_late_watcher_sees_everything_exactly_once(event_log: EventLog) -> None:
    task = new_id()
    early = asyncio.create_task(collect(event_log, task))
    appended = [await event_log.append(task, p) for p in every_payload()]  # ends with a result
    late = await collect(event_log, task)
    assert late == appended
    assert await asyncio.wait_for(early, 5) == appended


async def test_watchers_joining_during_appends_miss_nothing_and_see_nothing_twice(event_log: EventLog) -> None:
    task = new_id()
    total = 400
    rng = random.Random(7)

    async def producer() -> None:
        for i in range(total - 1):
            await event_log.append(task, LogLine("agent", str(i)))
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        await event_log.append(task, result())

    async def watcher(delay_s: float, after_seq: int) -> tuple[int, list[int]]:
        await asyncio.sleep(delay_s)
        return after_seq, [e.seq async for e in event_log.watch(task, after_seq)]

    watchers = [asyncio.create_task(watcher(rng.uniform(0, 0.2), rng.choice([0, 0, 5, 50]))) for _ in range(12)]
    await producer()
    for after_seq, seqs in await asyncio.gather(*watchers):
        assert seqs == list(range(after_seq + 1, total + 1))


async def test_a_watcher_that_stops_early_can_resume_where_it_left(event_log: EventLog) -> None:
    task = new_id()
    await append_lines(event_log, task, 10)
    first_part: list[int] = []
    async for event in event_log.watch(task):
        first_part.append(event.seq)
        if event.seq == 4:
            break
    await event_log.append(task, result())
    rest = [e.seq for e in await collect(event_log, task, after_seq=first_part[-1])]
    assert first_part + rest == list(range(1, 12))
