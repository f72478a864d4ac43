"""Running processes: deadlines kill whole process groups, output streams through bounded memory."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest
from agent_testing import alive, call, make_toolbox, wait_dead

from agent.baseline import ShadowRepo
from agent.shell import HeadTail, run_process
from agent.tools import Toolbox


def test_head_tail_keeps_both_ends_and_counts_the_middle() -> None:
    sink = HeadTail(head=4, tail=3)
    for chunk in (b"abcdef", b"ghij", b"klmnop"):
        sink(chunk)
    assert sink.total == 16
    assert sink.dropped == 9
    assert sink.text() == "abcd\n[... 9 bytes of output dropped ...]\nnop"


def test_head_tail_without_overflow_is_exact() -> None:
    sink = HeadTail(head=10, tail=10)
    sink(b"hello ")
    sink(b"world")
    assert sink.dropped == 0
    assert sink.text() == "hello world"


@pytest.mark.timeout(10)
def test_exit_code_and_separate_streams(tmp_path: Path) -> None:
    out, err = HeadTail(1000, 1000), HeadTail(1000, 1000)
    done = run_process(["bash", "-c", "echo out; echo err >&2; exit 3"], cwd=tmp_path, timeout_s=5,
                       stdout=out, stderr=err)
    assert (done.exit_code, done.timed_out, done.signal) == (3, False, None)
    assert out.text() == "out\n"
    assert err.text() == "err\n"


@pytest.mark.timeout(10)
def test_merged_streams_keep_their_order(tmp_path: Path) -> None:
    both = HeadTail(1000, 1000)
    run_process(["bash", "-c", "echo 1; echo 2 >&2; echo 3"], cwd=tmp_path, timeout_s=5, stdout=both)
    assert both.text() == "1\n2\n3\n"


@pytest.mark.timeout(10)
def test_stdin_is_closed(tmp_path: Path) -> None:
    out = HeadTail(1000, 1000)
    done = run_process(["bash", "-c", "read line; echo \"got=$line rc=$?\""], cwd=tmp_path, timeout_s=5, stdout=out)
    assert done.exit_code == 0
    assert out.text() == "got= rc=1\n"


@pytest.mark.timeout(10)
def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    out = HeadTail(1000, 1000)
    started = time.monotonic()
    # bash starts a grandchild that would outlive it, then waits forever itself.
    done = run_process(["bash", "-c", f"sleep 1000 & echo $! > {pidfile}; echo started; sleep 1000"],
                       cwd=tmp_path, timeout_s=0.5, stdout=out)
    assert time.monotonic() - started < 3
    assert done.timed_out
    assert done.exit_code is None
    assert out.text() == "started\n"
    grandchild = int(pidfile.read_text())
    assert wait_dead(grandchild), f"grandchild {grandchild} survived the timeout"


@pytest.mark.timeout(10)
def test_background_process_holding_the_output_does_not_block(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    out = HeadTail(1000, 1000)
    started = time.monotonic()
    done = run_process(["bash", "-c", f"sleep 30 & echo $! > {pidfile}; echo done"], cwd=tmp_path,
                       timeout_s=20, stdout=out)
    assert time.monotonic() - started < 5
    assert done.exit_code == 0 and done.detached and not done.timed_out
    assert out.text() == "done\n"
    bg = int(pidfile.read_text())
    try:
        assert alive(bg), "a background process is left running, as in a terminal"
    finally:
        os.kill(bg, 9)


@pytest.mark.timeout(60)
def test_gigabytes_of_output_stream_through_bounded_memory(toolbox: Toolbox) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.monotonic()
    result = call(toolbox, "run_shell_command", command_string="yes | head -c 2000000000; echo THE-END")
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.ok and result.exit_code == 0
    assert len(result.output) <= 16_000
    assert result.output.startswith("exit code: 0\nstdout:\ny\ny\n")
    assert "THE-END" in result.output  # the tail is kept
    assert "bytes of output dropped" in result.output or "characters omitted" in result.output
    assert after - before < 100 * 1024, f"peak memory grew by {(after - before) // 1024} MiB"
    assert elapsed < 45


@pytest.mark.timeout(20)
def test_shell_tool_timeout_says_so_and_kills_the_group(ws: Path, repo: ShadowRepo) -> None:
    box = make_toolbox(ws, repo, timeout_s=0.5)
    started = time.monotonic()
    result = call(box, "run_shell_command",
                  command_string="(sleep 1000; echo never) & echo $! > child.pid; echo partial; sleep 1000")
    assert time.monotonic() - started < 5
    assert not result.ok
    assert result.exit_code is None
    assert result.output.startswith("timed out after 0.5 s: the command and every process it started were killed")
    assert "partial" in result.output
    assert wait_dead(int((ws / "child.pid").read_text()))
