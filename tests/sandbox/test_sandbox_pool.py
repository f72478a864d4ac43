"""The warm pool: sandboxes started ahead of their task, each serving one task; size 0 starts on demand;
the real agent as the default command; and how much the pool saves (figures, not assertions)."""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import textwrap
import time

import pytest
from sandbox_testing import Gateway, MakeExecutor, alive, eventually, make_job, results_of, sandbox_processes

from runner.adapters.embedded.fs_blob_store import FsBlobStore
from runner.adapters.local_executor import AgentCommand
from runner.domain.errors import TemporaryError, Unavailable
from runner.ports import SandboxJob

pytestmark = pytest.mark.timeout(60)
log = logging.getLogger(__name__)

_REPORT = textwrap.dedent("""
    results["started_at"] = started_at
    results["pid_ns"] = os.readlink("/proc/self/ns/pid")
    results["saw_flag"] = os.path.exists("/tmp/flag") or os.path.exists("/workspace/flag")
    open("/tmp/flag", "w").close()
    open("/workspace/flag", "w").close()
    results["workspace"] = sorted(os.listdir("/workspace"))
""")


async def test_a_warm_sandbox_is_taken_and_the_pool_refills(make_executor: MakeExecutor, marker: str) -> None:
    executor = await make_executor(pool_size=1)
    await executor.wait_warm()
    assert executor.warm_sandboxes == 1
    await asyncio.sleep(0.5)  # wait_warm means spawned; give the interpreter inside time to start
    warm_pids = sandbox_processes(marker)
    before = time.time()
    found = results_of(await executor.run(make_job(_REPORT)))
    assert found["started_at"] < before  # the agent was running before the task existed
    await executor.wait_warm()
    assert executor.warm_sandboxes == 1
    assert not alive(warm_pids) - sandbox_processes(marker)  # the used sandbox is gone ...
    assert sandbox_processes(marker) - warm_pids  # ... and a new one waits


async def test_each_sandbox_serves_exactly_one_task(make_executor: MakeExecutor) -> None:
    executor = await make_executor(pool_size=1)
    first = results_of(await executor.run(make_job(_REPORT)))
    second = results_of(await executor.run(make_job(_REPORT)))
    assert first["pid_ns"] != second["pid_ns"]
    assert not first["saw_flag"] and not second["saw_flag"]
    assert first["workspace"] == second["workspace"] == ["flag"]


async def test_pool_size_zero_runs_concurrent_tasks_on_demand(make_executor: MakeExecutor) -> None:
    executor = await make_executor(pool_size=0)
    await executor.wait_warm()
    assert executor.warm_sandboxes == 0
    outcomes = await asyncio.gather(*(executor.run(make_job(_REPORT)) for _ in range(4)))
    found = [results_of(o) for o in outcomes]
    assert len({f["pid_ns"] for f in found}) == 4
    assert not any(f["saw_flag"] for f in found)


async def test_a_restarted_gateway_makes_warm_sandboxes_stale(make_executor: MakeExecutor, gateway: Gateway) -> None:
    # A warm sandbox's bind mount holds the old socket's inode; after a gateway restart it would reach
    # nothing. The pool must notice and hand out a fresh sandbox instead.
    executor = await make_executor(pool_size=1)
    await executor.wait_warm()
    gateway.restart()
    outcome = await executor.run(make_job("results['reply'] = gateway_request(b'{}').decode()"))
    assert results_of(outcome)["reply"].startswith("HTTP/1.1 200 OK")
    assert len(gateway.requests) == 1


async def test_a_warm_sandbox_that_dies_idle_is_replaced_without_spinning(
        make_executor: MakeExecutor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="runner.adapters.local_executor")
    executor = await make_executor(pool_size=1, agent=AgentCommand(("/bin/sh", "-c", "echo broken agent; exit 3")))
    await asyncio.sleep(1.0)
    deaths = [r for r in caplog.records if r.getMessage() == "warm sandbox exited before it was given a task"]
    assert 1 <= len(deaths) <= 3  # backing off (0.5 s, 1 s, ...), not restarting in a loop
    outcome = await executor.run(make_job("unused"))
    assert outcome.exit_code == 3
    assert outcome.detail == "the agent exited with code 3"


async def test_the_default_command_runs_the_real_agent(make_executor: MakeExecutor, blobs: FsBlobStore) -> None:
    # The agent package on the host's base interpreter, bound read-only: it starts warm, reads the spec
    # line, and (given a spec that is not one) says so and exits 2, as its entry point documents.
    executor = await make_executor(pool_size=1, agent=None)
    await executor.wait_warm()
    job = make_job("unused")
    outcome = await executor.run(SandboxJob(job.task, job.attempt, job.manifest, b"this is not a task spec"))
    assert outcome.exit_code == 2, outcome.detail
    (log_ref,) = [a for a in outcome.artifacts if a.name == "agent.log"]
    assert b"invalid task spec" in await blobs.get_bytes("tenant-a", log_ref.digest)


async def test_the_real_agent_is_not_locked_out_by_a_strict_umask_of_the_runner(
        make_executor: MakeExecutor, blobs: FsBlobStore) -> None:
    # Sandboxes inherit the runner's umask. 0o177 leaves new folders without their search bit; the agent
    # sets its own umask first, so it still prepares its shadow repository while warm.
    old = os.umask(0o177)
    try:
        executor = await make_executor(pool_size=1, agent=None)
        await executor.wait_warm()
    finally:
        os.umask(old)
    job = make_job("unused")
    outcome = await executor.run(SandboxJob(job.task, job.attempt, job.manifest, b"not a spec"))
    (log_ref,) = [a for a in outcome.artifacts if a.name == "agent.log"]
    log = await blobs.get_bytes("tenant-a", log_ref.digest)
    assert b"invalid task spec" in log
    assert b"could not prepare" not in log, log.decode()


@pytest.mark.timeout(120)
async def test_start_latency_with_and_without_the_pool(make_executor: MakeExecutor, gateway: Gateway) -> None:
    """run() → the agent's first byte on the gateway socket. Reported, not asserted (see bench/)."""
    first_request = "gateway_request(b'{}')"
    figures: dict[str, float] = {}
    for pool_size in (0, 1):
        executor = await make_executor(pool_size=pool_size)
        latencies = []
        for _ in range(15):
            await executor.wait_warm()
            await asyncio.sleep(0.3 if pool_size else 0.05)  # a warm agent has finished importing
            seen = len(gateway.requests)
            t0 = time.monotonic()
            outcome = await executor.run(make_job(first_request))
            assert outcome.exit_code == 0, outcome.detail
            latencies.append((gateway.wait_requests(seen + 1, 5)[seen].first_byte_at - t0) * 1000)
        name = "warm" if pool_size else "cold"
        figures[f"{name}_p50_ms"] = round(statistics.median(latencies), 2)
        figures[f"{name}_max_ms"] = round(max(latencies), 2)
        await executor.close()
    log.info("run() to the agent's first byte on the gateway socket: %s", figures)


async def test_no_gateway_is_a_temporary_error(make_executor: MakeExecutor, gateway: Gateway,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="runner.adapters.local_executor")
    gateway.stop()
    executor = await make_executor(pool_size=1)
    with pytest.raises(Unavailable, match=r"gateway socket .* does not exist") as raised:
        await executor.run(make_job("unused"))
    assert isinstance(raised.value, TemporaryError)
    assert executor.warm_sandboxes == 0
    await eventually(lambda: any(r.getMessage() == "could not start a warm sandbox; retrying"
                                 for r in caplog.records))
    gateway.start()
    await executor.wait_warm()
    outcome = await executor.run(make_job("results['reply'] = gateway_request().decode()[:15]"))
    assert results_of(outcome) == {"reply": "HTTP/1.1 200 OK"}
