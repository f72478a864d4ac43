"""The whole distributed installation under faults, as an operator would run it: two runners and two
workers on one NATS and one MinIO, tasks submitted to both runners and each watched through the other,
a worker killed and NATS restarted while they run. Every task ends COMPLETED with one correct diff;
every watcher's event sequence has no gap and no repeat."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from e2e.conftest import copy_example, read_until_tool_call

from .helpers import assert_gap_free_once, cli, events_of, slow_scenario, worker_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TASKS_PER_RUNNER = 3


async def test_two_runners_two_workers_a_killed_worker_and_a_nats_restart(short_tmp, provider_factory,
                                                                          cluster_factory, nats_server_factory):
    nats = nats_server_factory()
    provider = await provider_factory(slow_scenario(3))
    cluster = await cluster_factory(provider, nats=nats)
    runner_a, runner_b = await cluster.start_runner(), await cluster.start_runner()
    await cluster.start_worker(slots=2)
    await cluster.start_worker(slots=2)
    via = {runner_a.address: cli(cluster, short_tmp / "cli-a", runner_a),
           runner_b.address: cli(cluster, short_tmp / "cli-b", runner_b)}
    codex_a, codex_b = via[runner_a.address], via[runner_b.address]

    runs, workspaces = [], []
    for n in range(2 * TASKS_PER_RUNNER):
        submit = codex_a if n % 2 == 0 else codex_b
        ws = copy_example(short_tmp / f"ws{n}")
        workspaces.append(ws)
        runs.append((submit, await submit.start("run", "--json", f"Write notes {n}", cwd=ws)))
    first = await read_until_tool_call(runs[0][1], runs[0][0])
    # Each task is watched from its first event through the runner it was not submitted to.
    task_ids = [first] + [await read_until_tool_call(proc, submit) for submit, proc in runs[1:]]
    watchers = []
    for n, task_id in enumerate(task_ids):
        other = codex_b if n % 2 == 0 else codex_a
        watchers.append(await other.start("watch", "--json", task_id))

    await worker_of(cluster, first).kill()
    await cluster.start_worker(slots=2)  # the replacement
    await asyncio.to_thread(nats.restart, kill=True, down_s=1.0)

    procs = [proc for _, proc in runs] + watchers
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 180)
    assert all(p.returncode == 0 for p in procs), f"{[p.returncode for p in procs]}\n{cluster.logs()}"

    for n, task_id in enumerate(task_ids):
        watched = events_of(outputs[len(runs) + n][0].decode())
        assert_gap_free_once(watched, f"the watcher of {task_id}")
        assert watched[-1]["state"] == "COMPLETED"
        status = json.loads((await codex_a.run("status", "--json", task_id)).stdout)
        assert status["state"] == "COMPLETED", status
        diff = (await codex_b.run("diff", task_id)).stdout
        assert diff.count("+survived") == 1 and diff.count("diff --git") == 1, diff
        check = subprocess.run(["git", "apply", "--check", "-"], input=diff, text=True, capture_output=True,
                               cwd=copy_example(short_tmp / f"pristine{n}"), check=False)
        assert check.returncode == 0, check.stderr
