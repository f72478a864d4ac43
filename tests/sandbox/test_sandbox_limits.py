"""Resource limits: processes, memory, file size, CPU time and wall time, in cgroup and rlimit mode."""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time

import pytest
from sandbox_testing import MakeExecutor, alive, make_job, results_of, sandbox_processes

from runner.adapters.local_executor import SandboxLimits
from runner.domain.models import TaskLimits

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("use_cgroups", [True, False], ids=["cgroup", "rlimit"])
async def test_forking_is_stopped_at_the_process_limit(make_executor: MakeExecutor, marker: str,
                                                       use_cgroups: bool) -> None:
    # A linear fork loop (not an exponential bomb: in rlimit mode the watchdog acts after the fact, and a
    # test must not be able to starve the host if it regressed).
    executor = await make_executor(use_cgroups=use_cgroups)
    outcome = await executor.run(make_job(textwrap.dedent("""
        children = []
        try:
            for _ in range(2000):
                pid = os.fork()
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                children.append(pid)
        except OSError as exc:
            results["stopped_by"] = exc.strerror
        results["forked"] = len(children)
    """), limits=TaskLimits(max_processes=40, wall_time_s=20)))
    if executor.limits_enforcement.startswith("cgroup"):
        # The pids cgroup refuses the fork itself.
        found = results_of(outcome)
        assert found["stopped_by"] == "Resource temporarily unavailable"
        assert found["forked"] < 40
        assert "process limit of 40 was reached" in outcome.detail
    else:
        # The watchdog kills the sandbox once it holds more than 40 processes.
        assert not outcome.timed_out and outcome.exit_code is None
        assert "the process limit of 40 was exceeded; the sandbox was killed" in outcome.detail
    assert not alive(sandbox_processes(marker))


async def test_shell_fork_bomb_ends_with_the_wall_time_and_leaves_nothing(make_executor: MakeExecutor,
                                                                           marker: str) -> None:
    executor = await make_executor()
    if not executor.limits_enforcement.startswith("cgroup"):
        pytest.skip("an exponential fork bomb is only contained by a pids cgroup (rlimit mode: see the docs)")
    t0 = time.monotonic()
    outcome = await executor.run(make_job(textwrap.dedent("""
        subprocess.run(["/bin/sh", "-c", "bomb() { bomb | bomb & }; bomb"], check=False)
        time.sleep(60)
    """), limits=TaskLimits(max_processes=64, wall_time_s=2.0)))
    assert outcome.timed_out
    assert outcome.exit_code is None
    assert time.monotonic() - t0 < 6
    assert "wall time of 2 s exceeded while running" in outcome.detail
    assert not alive(sandbox_processes(marker))


@pytest.mark.parametrize("use_cgroups", [True, False], ids=["cgroup", "rlimit"])
async def test_memory_hog_is_stopped(make_executor: MakeExecutor, use_cgroups: bool) -> None:
    executor = await make_executor(use_cgroups=use_cgroups)
    hog = textwrap.dedent("""
        chunks = []
        try:
            for _ in range(200):
                chunks.append(bytearray(8 << 20))  # 1.6 GiB in all, each page touched by bytearray's zeroing
            results["allocated_mib"] = 8 * len(chunks)
        except MemoryError:
            results["stopped_by"] = "MemoryError"
            results["allocated_mib"] = 8 * len(chunks)
    """)
    outcome = await executor.run(make_job(hog, limits=TaskLimits(memory_bytes=256 << 20)))
    if executor.limits_enforcement.startswith("cgroup"):
        # The kernel's OOM killer ends the agent; it never gets to report.
        assert outcome.exit_code is None
        assert "killed by SIGKILL" in outcome.detail
        assert "out of memory" in outcome.detail and "256 MiB" in outcome.detail
    else:
        found = results_of(outcome)
        assert found["stopped_by"] == "MemoryError"
        assert found["allocated_mib"] < 256


async def test_file_size_limit(make_executor: MakeExecutor) -> None:
    executor = await make_executor()
    outcome = await executor.run(make_job(textwrap.dedent("""
        try:
            with open("/workspace/big", "wb") as f:
                f.write(b"x" * (3 << 20))
            results["written"] = True
        except OSError as exc:
            results["stopped_by"] = exc.strerror
        results["size"] = os.path.getsize("/workspace/big")
    """), limits=TaskLimits(max_file_bytes=1 << 20)))
    found = results_of(outcome)
    assert found["stopped_by"] == "File too large"  # Python ignores SIGXFSZ, so write() fails with EFBIG
    assert found["size"] == 1 << 20


async def test_cpu_time_limit(make_executor: MakeExecutor) -> None:
    executor = await make_executor(limits=SandboxLimits(cpu_time_s=1))
    t0 = time.monotonic()
    outcome = await executor.run(make_job("while True:\n    pass\n"))
    assert time.monotonic() - t0 < 10
    assert outcome.exit_code is None
    assert "killed by SIGXCPU" in outcome.detail
    assert "CPU time limit of 1 s" in outcome.detail


async def test_wall_time_kills_and_reports(make_executor: MakeExecutor, marker: str) -> None:
    executor = await make_executor()
    t0 = time.monotonic()
    outcome = await executor.run(make_job(textwrap.dedent("""
        subprocess.Popen(["sleep", "300"])
        subprocess.Popen(["setsid", "sh", "-c", "sleep 300 &"])
        time.sleep(300)
    """), limits=TaskLimits(wall_time_s=1.0)))
    elapsed = time.monotonic() - t0
    assert outcome.timed_out and outcome.exit_code is None
    assert 1.0 <= elapsed < 4.0
    assert outcome.detail.startswith("wall time of 1 s exceeded while running; the sandbox was killed")
    assert [a.name for a in outcome.artifacts] == ["agent.log"]
    assert not alive(sandbox_processes(marker))


async def test_task_limits_only_lower_the_executor_ceilings(make_executor: MakeExecutor) -> None:
    executor = await make_executor(limits=SandboxLimits(max_file_bytes=1 << 20, max_open_files=256))
    outcome = await executor.run(make_job(textwrap.dedent("""
        import resource
        results["fsize"] = resource.getrlimit(resource.RLIMIT_FSIZE)
        results["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)
        results["core"] = resource.getrlimit(resource.RLIMIT_CORE)
    """), limits=TaskLimits(max_file_bytes=8 << 30)))
    found = results_of(outcome)
    assert found["fsize"] == [1 << 20, 1 << 20]
    assert found["nofile"] == [256, 256]
    assert found["core"] == [0, 0]


@pytest.mark.parametrize("pool_size", [0, 1], ids=["on-demand", "warm"])
@pytest.mark.parametrize("use_cgroups", [True, False], ids=["cgroup", "rlimit"])
async def test_task_limits_reach_the_agent_however_it_was_started(make_executor: MakeExecutor, pool_size: int,
                                                                 use_cgroups: bool) -> None:
    # A sandbox started on demand gets the task's limits from its start; a warm one, started before its
    # task was known, gets them applied to its running processes. Either way, before the agent reads
    # its task, without a window in which a just-forked process keeps the ceilings.
    executor = await make_executor(pool_size=pool_size, use_cgroups=use_cgroups)
    probe = textwrap.dedent("""
        import resource
        results["fsize"] = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        results["as"] = resource.getrlimit(resource.RLIMIT_AS)[0]
        results["child_fsize"] = int(subprocess.run(["sh", "-c", "ulimit -f"], capture_output=True,
                                                    text=True).stdout) * 512
    """)
    for _ in range(3):
        outcome = await executor.run(make_job(probe, limits=TaskLimits(max_file_bytes=3 << 20,
                                                                       memory_bytes=512 << 20)))
        found = results_of(outcome)
        assert found["fsize"] == found["child_fsize"] == 3 << 20
        if not use_cgroups:
            assert found["as"] == 512 << 20


async def test_a_memory_limit_below_a_warm_sandbox_usage_falls_back_to_a_new_sandbox(
        make_executor: MakeExecutor, caplog: pytest.LogCaptureFixture) -> None:
    executor = await make_executor(pool_size=1)
    if not executor.limits_enforcement.startswith("cgroup"):
        pytest.skip("needs the memory cgroup")
    await executor.wait_warm()
    await asyncio.sleep(0.5)  # the warm interpreter is up and holds more than 4 MiB
    caplog.set_level(logging.WARNING, logger="runner.adapters.local_executor")
    outcome = await executor.run(make_job("results['ran'] = True", limits=TaskLimits(memory_bytes=4 << 20)))
    assert any(r.getMessage().startswith("could not apply the task's limits to a warm sandbox")
               for r in caplog.records)
    # The task ran (and here, with 4 MiB, could not even start its interpreter): an outcome, not a crash.
    assert outcome.exit_code is None
    assert "out of memory" in outcome.detail and "memory limit of 4 MiB" in outcome.detail
