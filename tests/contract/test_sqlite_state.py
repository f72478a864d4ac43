"""What only the embedded SQLite adapters promise: state that survives a restart, a versioned schema, and
sharing one database file with other processes (a CLI watching next to the runner)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.adapters.embedded import (
    DecodeError,
    SqliteEventLog,
    SqliteTaskQueue,
    SqliteTaskStore,
    StateDB,
    open_state_db,
)
from runner.adapters.embedded.schema import SCHEMA_VERSION
from runner.domain.errors import Conflict, FailedPrecondition, Unavailable
from runner.domain.models import LogLine, TaskState
from runner.ports import QueuedTask

from .samples import every_payload, full_record, new_id, record, result

pytestmark = pytest.mark.timeout(30)


def run_other_process(code: str) -> subprocess.Popen[bytes]:
    """Start a Python process running `code` (an async `main()` body gets the database path as `path`)."""
    script = "import asyncio, sys\nfrom pathlib import Path\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def wait_process(proc: subprocess.Popen[bytes]) -> None:
    try:
        _, err = await asyncio.to_thread(proc.communicate, timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()


# ---- restarts --------------------------------------------------------------------------------------------


async def test_tasks_and_events_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await open_state_db(path) as db:
        tasks, events = SqliteTaskStore(db), SqliteEventLog(db)
        created = await tasks.create(full_record())
        updated = await tasks.update(created.with_state(TaskState.PREPARING))
        appended = [await events.append(created.id, p) for p in every_payload()[:-1]]
        await tasks.close()
        await events.close()
    async with await open_state_db(path) as db:
        tasks, events = SqliteTaskStore(db), SqliteEventLog(db)
        assert await tasks.get(created.id) == updated
        assert await tasks.list(created.tenant) == [updated]
        assert await events.read(created.id) == appended
        after = await events.append(created.id, result())
        assert after.seq == len(appended) + 1
        assert [e.seq async for e in events.watch(created.id)] == list(range(1, after.seq + 1))


async def test_queued_tasks_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queued = QueuedTask(new_id(), "tenant-a")
    async with await open_state_db(path) as db:
        await SqliteTaskQueue(db).enqueue(queued)
    async with await open_state_db(path) as db:
        delivery = await SqliteTaskQueue(db).receive(timeout_s=5)
        assert delivery is not None and delivery.task == queued and delivery.attempt == 1


async def test_an_unacked_delivery_is_delivered_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queued = QueuedTask(new_id(), "tenant-a")
    async with await open_state_db(path) as db:
        queue = SqliteTaskQueue(db, ack_wait_s=0.5)
        await queue.enqueue(queued)
        first = await queue.receive(timeout_s=5)
        assert first is not None and first.attempt == 1
        # the runner dies here, without ack
    async with await open_state_db(path) as db:
        queue = SqliteTaskQueue(db, ack_wait_s=0.5)
        again = await queue.receive(timeout_s=5)
        assert again is not None and again.task == queued and again.attempt == 2


async def test_release_leases_takes_back_a_crashed_runners_work_at_once(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await open_state_db(path) as db:
        queue = SqliteTaskQueue(db, ack_wait_s=600)
        await queue.enqueue(QueuedTask(new_id(), "tenant-a"))
        assert await queue.receive(timeout_s=5) is not None
    async with await open_state_db(path) as db:
        queue = SqliteTaskQueue(db, ack_wait_s=600)
        assert await queue.receive(timeout_s=0) is None
        assert await queue.release_leases() == 1
        again = await queue.receive(timeout_s=0)
        assert again is not None and again.attempt == 2


# ---- schema -----------------------------------------------------------------------------------------------


async def test_the_schema_is_versioned_and_reopening_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    for _ in range(2):
        async with await open_state_db(path):
            pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {"tasks", "events", "queue"} <= tables


async def test_many_processes_opening_a_new_database_at_once(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    procs = [run_other_process(f"""
        from runner.adapters.embedded import open_state_db
        async def main():
            async with await open_state_db(Path({str(path)!r})):
                pass
        asyncio.run(main())
        """) for _ in range(4)]
    await asyncio.gather(*(wait_process(p) for p in procs))
    async with await open_state_db(path):
        pass


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await open_state_db(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(FailedPrecondition, match="newer"):
        await open_state_db(path)


async def test_a_stored_record_that_does_not_decode_is_an_error_not_a_guess(tmp_path: Path) -> None:
    async with await open_state_db(tmp_path / "state.db") as db:
        tasks = SqliteTaskStore(db)
        created = await tasks.create(record())
        await db.write(lambda conn: conn.execute(
            "UPDATE tasks SET body = replace(body, '\"QUEUED\"', '\"QUEUEDX\"') WHERE id = ?", (created.id,)))
        with pytest.raises(DecodeError, match="state"):
            await tasks.get(created.id)


# ---- several connections (processes) on one file ----------------------------------------------------------


async def test_compare_and_set_holds_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await open_state_db(path) as db1, await open_state_db(path) as db2:
        one, two = SqliteTaskStore(db1), SqliteTaskStore(db2)
        created = await one.create(record())
        seen_by_two = await two.get(created.id)
        await one.update(created.with_state(TaskState.PREPARING))
        with pytest.raises(Conflict):
            await two.update(seen_by_two.with_state(TaskState.CANCELLED))
        current = await two.get(created.id)
        outcomes = await asyncio.gather(
            *(store.update(dataclasses.replace(current, files_changed=n)) for n, store in enumerate([one, two] * 3)),
            return_exceptions=True)
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, BaseException))
        assert await one.get(created.id) == winners[0]


async def test_appends_from_two_connections_stay_gap_free(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    task = new_id()
    async with await open_state_db(path) as db1, await open_state_db(path) as db2:
        logs = [SqliteEventLog(db1), SqliteEventLog(db2)]
        await asyncio.gather(*(logs[i % 2].append(task, LogLine("agent", str(i))) for i in range(200)))
        assert [e.seq for e in await logs[0].read(task)] == list(range(1, 201))


async def test_a_watcher_follows_appends_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    task = new_id()
    async with await open_state_db(path, poll_interval_s=0.05) as db:
        log = SqliteEventLog(db)
        await log.append(task, LogLine("runner", "from this process"))
        seen: list[int] = []
        caught_up = asyncio.Event()

        async def watch() -> None:
            async for event in log.watch(task):
                seen.append(event.seq)
                caught_up.set()

        watching = asyncio.create_task(watch())
        await asyncio.wait_for(caught_up.wait(), 5)
        proc = run_other_process(f"""
            from runner.adapters.embedded import SqliteEventLog, open_state_db
            from runner.domain.models import LogLine, TaskResult, TaskState
            async def main():
                async with await open_state_db(Path({str(path)!r})) as db:
                    log = SqliteEventLog(db)
                    for i in range(3):
                        await log.append({task!r}, LogLine("agent", f"from another process {{i}}"))
                        await asyncio.sleep(0.1)
                    await log.append({task!r}, TaskResult(TaskState.COMPLETED, "", 0, ()))
            asyncio.run(main())
            """)
        await wait_process(proc)
        await asyncio.wait_for(watching, 10)
        assert seen == [1, 2, 3, 4, 5]


async def test_a_receiver_gets_a_task_enqueued_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    task = new_id()
    async with await open_state_db(path, poll_interval_s=0.05) as db:
        queue = SqliteTaskQueue(db)
        waiting = asyncio.ensure_future(queue.receive(timeout_s=20))
        proc = run_other_process(f"""
            from runner.adapters.embedded import SqliteTaskQueue, open_state_db
            from runner.ports import QueuedTask
            async def main():
                async with await open_state_db(Path({str(path)!r})) as db:
                    await SqliteTaskQueue(db).enqueue(QueuedTask({task!r}, "tenant-a"))
            asyncio.run(main())
            """)
        await wait_process(proc)
        delivery = await asyncio.wait_for(waiting, 5)
        assert delivery is not None and delivery.task.task_id == task


# ---- queue details beyond the port ------------------------------------------------------------------------


async def test_exhausted_tasks_are_listed_until_discarded(tmp_path: Path) -> None:
    async with await open_state_db(tmp_path / "state.db") as db:
        queue = SqliteTaskQueue(db, ack_wait_s=1.0, max_deliver=2)
        queued = QueuedTask(new_id(), "tenant-a")
        await queue.enqueue(queued)
        for attempt in (1, 2):
            delivery = await queue.receive(timeout_s=5)
            assert delivery is not None and delivery.attempt == attempt
        assert await queue.exhausted() == []  # the last delivery is still running
        await asyncio.sleep(1.1)
        [exhausted] = await queue.exhausted()
        assert exhausted.task == queued and exhausted.attempts == 2
        await queue.enqueue(queued)  # still known: not queued again
        assert await queue.receive(timeout_s=0) is None
        assert await queue.discard(queued.task_id)
        assert not await queue.discard(queued.task_id)
        assert await queue.exhausted() == []


async def test_a_delivery_that_lost_its_lease_cannot_settle_the_new_one(tmp_path: Path) -> None:
    async with await open_state_db(tmp_path / "state.db") as db:
        queue = SqliteTaskQueue(db, ack_wait_s=0.3)
        await queue.enqueue(QueuedTask(new_id(), "tenant-a"))
        old = await queue.receive(timeout_s=5)
        new = await queue.receive(timeout_s=5)  # after old's deadline
        assert old is not None and new is not None and new.attempt == 2
        await old.ack()  # too late: must not remove the task from under `new`
        await old.in_progress()
        third = await queue.receive(timeout_s=5)  # new did not heartbeat either
        assert third is not None and third.attempt == 3
        await third.ack()
        assert await queue.receive(timeout_s=0.5) is None


async def test_closing_ends_waiting_watchers_and_receivers(tmp_path: Path) -> None:
    async with await open_state_db(tmp_path / "state.db") as db:
        log, queue = SqliteEventLog(db), SqliteTaskQueue(db)
        watching = asyncio.ensure_future(anext(log.watch(new_id())))
        receiving = asyncio.ensure_future(queue.receive())
        await asyncio.sleep(0.05)
        await log.close()
        await queue.close()
        for pending in (watching, receiving):
            with pytest.raises(Unavailable):
                await asyncio.wait_for(pending, 5)


async def test_closing_the_database_ends_waiting_watchers_and_receivers(tmp_path: Path) -> None:
    db = await open_state_db(tmp_path / "state.db")
    log, queue = SqliteEventLog(db), SqliteTaskQueue(db)
    watching = asyncio.ensure_future(anext(log.watch(new_id())))
    receiving = asyncio.ensure_future(queue.receive())
    await asyncio.sleep(0.05)
    await db.close()
    for pending in (watching, receiving):
        with pytest.raises(Unavailable):
            await asyncio.wait_for(pending, 2)


async def test_a_closed_database_refuses_calls(tmp_path: Path) -> None:
    db = await StateDB.open(tmp_path / "state.db")
    tasks = SqliteTaskStore(db)
    await db.close()
    with pytest.raises(Unavailable):
        await tasks.get("x")
