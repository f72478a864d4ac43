"""NATS restarted (killed, down two seconds, back on the same port and store) while tasks run and
watchers stream: the tasks finish, and every watcher sees every event once, in order."""

from __future__ import annotations

import asyncio
import json

import pytest
from e2e.conftest import copy_example, read_until_tool_call

from .helpers import assert_gap_free_once, cli, events_of, slow_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TASKS = 3


async def test_tasks_and_watchers_ride_through_a_nats_restart(short_tmp, provider_factory, cluster_factory,
                                                              nats_server_factory):
    nats = nats_server_factory()
    provider = await provider_factory(slow_scenario(4))
    cluster = await cluster_factory(provider, nats=nats)
    await cluster.start_runner()
    await cluster.start_worker(slots=TASKS)
    codex = cli(cluster, short_tmp / "cli")

    runs = []
    for n in range(TASKS):
        ws = copy_example(short_tmp / f"ws{n}")
        runs.append(await codex.start("run", "--json", f"Write notes {n}", cwd=ws))
    task_ids = [await read_until_tool_call(proc, codex) for proc in runs]
    watchers = [await codex.start("watch", "--json", task_id) for task_id in task_ids]

    await asyncio.to_thread(nats.restart, kill=True, down_s=2.0)

    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in [*runs, *watchers])), 120)
    for proc in [*runs, *watchers]:
        assert proc.returncode == 0, codex.stderr_file.read_text()[-3000:] + cluster.logs()
    for task_id, (watch_out, _) in zip(task_ids, outputs[TASKS:], strict=True):
        watched = events_of(watch_out.decode())
        assert_gap_free_once(watched, f"the watcher of {task_id}")
        assert watched[-1]["state"] == "COMPLETED", watched[-1]
        full = events_of((await codex.run("watch", "--json", task_id)).stdout)
        assert watched == full, "the live watcher saw something else than the stored log"
    for n, (run_out, _) in enumerate(outputs[:TASKS]):
        # `run` printed the events after its first tool call was read by the test, then the rest.
        assert json.loads(run_out.decode().splitlines()[-1])["status"] == "COMPLETED", n
