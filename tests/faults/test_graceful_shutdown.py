"""SIGTERM to a worker with a task in hand: the task is stopped and handed back at once, and another
worker completes it as attempt 2 without waiting for the ack deadline; nothing half-written is left."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from e2e.conftest import copy_example, read_until_tool_call

from .helpers import assert_gap_free_once, cli, events_of, slow_scenario, worker_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


async def test_a_stopped_worker_hands_its_task_back_to_another(short_tmp, provider_factory, cluster_factory):
    provider = await provider_factory(slow_scenario(20))
    # An ack deadline far longer than the test: only the hand-back can explain a quick second attempt.
    cluster = await cluster_factory(provider, ack_wait_s=300.0)
    await cluster.start_runner()
    await cluster.start_worker(slots=1, CODEX_SYS_SHUTDOWN_GRACE="0.5")
    codex = cli(cluster, short_tmp / "cli")
    ws = copy_example(short_tmp)

    proc = await codex.start("run", "--json", "Write notes", cwd=ws)
    task_id = await read_until_tool_call(proc, codex)
    first = worker_of(cluster, task_id)
    await cluster.start_worker(slots=1)
    started = time.monotonic()
    assert await first.stop(timeout_s=20) == 0, first.log()[-3000:]
    stop_s = time.monotonic() - started

    rest, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, codex.stderr_file.read_text()[-2000:] + cluster.logs()
    assert json.loads(rest.decode().splitlines()[-1])["status"] == "COMPLETED"
    assert stop_s < 10, f"the worker took {stop_s:.1f} s to stop"

    events = events_of((await codex.run("watch", "--json", task_id)).stdout)
    assert_gap_free_once(events, "a late watcher")
    notes = [e["text"] for e in events if e["kind"] == "log_line" and "shutting down" in e.get("text", "")]
    assert len(notes) == 1, [e for e in events if e["kind"] == "log_line"]
    status = json.loads((await codex.run("status", "--json", task_id)).stdout)
    assert status["attempt"] == 2
    assert worker_of(cluster, task_id) is not first
    left = sorted(p.name for p in (first.home / "sandboxes").iterdir() if p.name.startswith("sb-"))
    assert not left, f"the stopped worker left sandbox folders behind: {left}\n{first.log()[-4000:]}"
