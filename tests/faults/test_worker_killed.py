"""A worker SIGKILLed in the middle of a task: another worker completes it, with one result."""

from __future__ import annotations

import asyncio
import json

import pytest
from e2e.conftest import copy_example, read_until_tool_call

from .helpers import assert_gap_free_once, cli, events_of, slow_scenario, worker_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


async def test_the_task_of_a_killed_worker_completes_on_another_with_one_result(short_tmp, provider_factory,
                                                                                cluster_factory):
    provider = await provider_factory(slow_scenario(3))
    cluster = await cluster_factory(provider)
    await cluster.start_runner()
    await cluster.start_worker(slots=1)
    await cluster.start_worker(slots=1)
    codex = cli(cluster, short_tmp / "cli")
    ws = copy_example(short_tmp)

    proc = await codex.start("run", "--json", "Write notes", cwd=ws)
    task_id = await read_until_tool_call(proc, codex)
    doomed = worker_of(cluster, task_id)
    await doomed.kill()

    rest, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, codex.stderr_file.read_text()[-2000:] + cluster.logs()
    assert json.loads(rest.decode().splitlines()[-1])["status"] == "COMPLETED"

    watched = await codex.run("watch", "--json", task_id)
    events = events_of(watched.stdout)
    assert_gap_free_once(events, "a late watcher")
    states = [e["state"] for e in events if e["kind"] == "state_changed"]
    assert states.count("PREPARING") == 2 and states[-1] == "COMPLETED", states
    status = json.loads((await codex.run("status", "--json", task_id)).stdout)
    assert status["attempt"] == 2
    survivor = worker_of(cluster, task_id)
    assert survivor is not doomed
    diff = (await codex.run("diff", task_id)).stdout
    assert diff.count("+survived") == 1, diff


async def test_a_task_whose_every_attempt_lost_its_worker_fails_with_a_reason(short_tmp, provider_factory,
                                                                              cluster_factory):
    provider = await provider_factory(slow_scenario(30))
    cluster = await cluster_factory(provider)
    await cluster.start_runner()
    await cluster.start_worker(slots=1, CODEX_SYS_QUEUE_MAX_DELIVER="1")
    codex = cli(cluster, short_tmp / "cli")
    ws = copy_example(short_tmp)

    proc = await codex.start("run", "--json", "Write notes", cwd=ws)
    task_id = await read_until_tool_call(proc, codex)
    await worker_of(cluster, task_id).kill()
    # Asks for work, which is when JetStream gives up on the task. The limit is the consumer's, shared by
    # every process: each must be started with the same one (the last to start sets it).
    await cluster.start_worker(slots=1, CODEX_SYS_QUEUE_MAX_DELIVER="1")

    rest, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 1, codex.stderr_file.read_text()[-2000:] + cluster.logs()
    result = json.loads(rest.decode().splitlines()[-1])
    assert result["status"] == "FAILED"
    assert "started 1 times and no attempt finished" in result["reason"], result
    events = events_of((await codex.run("watch", "--json", task_id)).stdout)
    assert_gap_free_once(events, "a late watcher")
