"""MinIO down for a few seconds: clients get a clear UNAVAILABLE at once, a worker storing a task's
outputs during the outage retries until MinIO is back, and nothing corrupt or partial is served."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from e2e.conftest import copy_example, read_until_tool_call

from runner.cli.main import EXIT_RUNNER

from .helpers import assert_gap_free_once, cli, events_of, slow_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


async def test_clients_get_unavailable_and_a_worker_rides_out_the_outage(short_tmp, provider_factory,
                                                                         cluster_factory, minio_server_factory):
    minio = minio_server_factory()
    provider = await provider_factory(slow_scenario(2))
    cluster = await cluster_factory(provider, minio=minio)
    await cluster.start_runner()
    await cluster.start_worker(slots=1)
    codex = cli(cluster, short_tmp / "cli")

    # A task whose sandbox is running when MinIO goes away, and still running for a second after.
    ws = copy_example(short_tmp / "running")
    proc = await codex.start("run", "--json", "Write notes", cwd=ws)
    task_id = await read_until_tool_call(proc, codex)
    await asyncio.to_thread(minio.stop)
    try:
        # Meanwhile a new submission is refused at once, with a reason that names the store.
        started = time.monotonic()
        refused = await codex.run("run", "--json", "--no-wait", "Anything", cwd=copy_example(short_tmp / "new"))
        refused_s = time.monotonic() - started
        assert refused.returncode == EXIT_RUNNER, refused.stdout + refused.stderr
        assert "MinIO at" in refused.stderr and "cannot be reached" in refused.stderr, refused.stderr
        assert refused_s < 15, f"the refusal took {refused_s:.1f} s"
        await asyncio.sleep(max(0.0, 4.0 - refused_s))  # the sandbox ends and its outputs wait for MinIO
    finally:
        await asyncio.to_thread(minio.start)

    rest, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, codex.stderr_file.read_text()[-2000:] + cluster.logs()
    assert json.loads(rest.decode().splitlines()[-1])["status"] == "COMPLETED"
    events = events_of((await codex.run("watch", "--json", task_id)).stdout)
    assert_gap_free_once(events, "a late watcher")
    status = json.loads((await codex.run("status", "--json", task_id)).stdout)
    assert status["attempt"] == 1, "the outputs were not kept through the outage: the task ran again"
    # Every artifact downloads and verifies (the CLI checks each against its digest).
    out = short_tmp / "out"
    got = await codex.run("artifacts", task_id, "--out", str(out))
    assert got.returncode == 0, got.stderr
    assert (out / "diff.patch").read_text().count("+survived") == 1
    assert "blob store unavailable; retrying" in cluster.workers[0].log()
