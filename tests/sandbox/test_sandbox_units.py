"""The local executor's pure parts, without starting a sandbox: the bubblewrap command line, the bounded
log, the outcome's words, cgroup discovery, limit arithmetic."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from runner.adapters.local_executor.bwrap_args import (
    SandboxLayout,
    bwrap_argv,
    check_bind_destination,
    env_pairs,
    sandbox_env,
)
from runner.adapters.local_executor.capture import BoundedLog
from runner.adapters.local_executor.cgroups import _mounted_hierarchies, _on_disk, _own_paths
from runner.adapters.local_executor.limits import SandboxLimits
from runner.adapters.local_executor.outcome import ExitFacts, describe, exit_code_of
from runner.domain.errors import InvalidArgument
from runner.domain.models import TaskLimits

pytestmark = pytest.mark.timeout(10)


def _layout(tmp_path: Path) -> SandboxLayout:
    return SandboxLayout(
        workspace=tmp_path / "ws", output=tmp_path / "out", gateway_socket=tmp_path / "gateway.sock",
        etc_dir=tmp_path / "etc", ro_binds=((tmp_path / "agent", "/opt/codex/agent"),),
        command=("/usr/bin/python3", "-S", "-m", "agent"), env=env_pairs(sandbox_env()), tmpfs_bytes=1 << 20)


def test_the_command_line_isolates(tmp_path: Path) -> None:
    argv = bwrap_argv("/usr/bin/bwrap", _layout(tmp_path))
    joined = " ".join(argv)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--clearenv", "--cap-drop ALL", "--remount-ro / ", "--remount-ro /dev",
                 f"--bind {tmp_path}/gateway.sock /run/codex/gateway.sock", f"--bind {tmp_path}/ws /workspace",
                 f"--bind {tmp_path}/out /output", "--ro-bind /usr /usr", "--uid 1000 --gid 1000"):
        assert flag in joined, flag
    assert "--share-net" not in argv
    # The command comes last, after "--", and nothing else of the host is bound writable.
    assert argv[argv.index("--") + 1:] == ["/usr/bin/python3", "-S", "-m", "agent"]
    writable = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
    assert writable == [str(tmp_path / "ws"), str(tmp_path / "out"), str(tmp_path / "gateway.sock")]
    sources = {argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--ro-bind-try")}
    assert not sources & {"/", "/etc", "/home", "/root", "/proc", "/sys", "/run", "/tmp", "/var"}
    # --remount-ro / comes after every mount under /.
    assert argv.index("/") > max(i for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--dir"))


def test_the_environment_is_a_fixed_allow_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never")
    argv = bwrap_argv("/usr/bin/bwrap", _layout(tmp_path))
    names = [argv[i + 1] for i, a in enumerate(argv) if a == "--setenv"]
    assert sorted(names) == ["HOME", "LANG", "PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "TERM", "TMPDIR"]
    assert "sk-never" not in " ".join(argv)


@pytest.mark.parametrize("dest", ["relative", "/workspace", "/workspace/x", "/tmp/x", "/etc/passwd", "/usr",
                                  "/run/codex", "/opt/../etc", "/opt//x"])
def test_extra_binds_cannot_land_on_what_the_executor_owns(dest: str) -> None:
    with pytest.raises(InvalidArgument):
        check_bind_destination(dest)


def test_extra_binds_elsewhere_are_fine() -> None:
    assert check_bind_destination("/opt/test-agents") == "/opt/test-agents"


async def _pump(log: BoundedLog, chunks: list[bytes]) -> None:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    await log.pump(reader)


async def test_bounded_log_keeps_head_and_tail(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000  # 1,024,000 bytes
    log = BoundedLog(tmp_path / "agent.log", head=1000, tail=500)
    await _pump(log, [data[i:i + 4096] for i in range(0, len(data), 4096)])
    written = (tmp_path / "agent.log").read_bytes()
    marker = f"\n[... {len(data) - 1500} bytes of output omitted; {len(data)} bytes in all ...]\n".encode()
    assert written == data[:1000] + marker + data[-500:]
    assert log.truncated and log.omitted == len(data) - 1500 and log.total == len(data)


async def test_bounded_log_keeps_short_output_whole(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "agent.log", head=1000, tail=500)
    await _pump(log, [b"a" * 900, b"b" * 500])
    assert (tmp_path / "agent.log").read_bytes() == b"a" * 900 + b"b" * 500
    assert not log.truncated


def _facts(**changes: object) -> ExitFacts:
    base: dict[str, object] = {"returncode": 0, "timed_out": False, "phase": "running", "oom_kills": 0,
                               "fork_refusals": 0, "process_limit_exceeded": False, "log_omitted": 0,
                               "setup_error": "", "notes": ()}
    base.update(changes)
    return ExitFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("facts", "code", "words"), [
    (_facts(), 0, "the agent exited with code 0"),
    (_facts(returncode=1), 1, "the agent exited with code 1"),
    (_facts(returncode=128 + signal.SIGKILL, oom_kills=1), None,
     "the agent was killed by SIGKILL (exit status 137); out of memory: the OOM killer stopped 1 process(es) "
     "at the memory limit of 4096 MiB"),
    (_facts(returncode=128 + signal.SIGXCPU), None,
     "the agent was killed by SIGXCPU (exit status 152); it used up its CPU time limit of 3600 s"),
    (_facts(returncode=-signal.SIGKILL, timed_out=True, phase="materialising the snapshot"), None,
     "wall time of 3600 s exceeded while materialising the snapshot; the sandbox was killed"),
    (_facts(returncode=-signal.SIGTERM), None, "the sandbox was killed by SIGTERM"),
    (_facts(returncode=1, setup_error="Can't find source path /nope: No such file or directory"), 1,
     "bubblewrap could not set up the sandbox (exit code 1): Can't find source path /nope: No such file or "
     "directory"),
    (_facts(fork_refusals=3, log_omitted=10, notes=("refused /output/x",)), 0,
     "the agent exited with code 0; the process limit of 512 was reached (3 fork(s) refused); agent.log "
     "truncated: 10 bytes of output omitted from the middle; refused /output/x"),
])
def test_outcome_words(facts: ExitFacts, code: int | None, words: str) -> None:
    assert exit_code_of(facts.returncode, facts.timed_out) == code
    assert describe(facts, SandboxLimits()) == words


_HYBRID_MOUNTINFO = """\
24 31 0:22 / /sys rw,nosuid - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
40 35 0:35 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 35 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
42 35 0:37 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
43 35 0:38 /sandboxed /sys/fs/cgroup/odd\\040name rw - cgroup cgroup rw,freezer
"""

_PROC_CGROUP = """\
5:pids:/user.slice
4:memory:/process_api/abc
3:cpu,cpuacct:/
2:freezer:/elsewhere
0::/user.slice/session-1.scope
"""


def test_cgroup_hierarchies_are_found_from_mountinfo() -> None:
    found = {(str(h.mount_point), h.version): h for h in _mounted_hierarchies(_HYBRID_MOUNTINFO)}
    assert set(found) == {("/sys/fs/cgroup/unified", 2), ("/sys/fs/cgroup/memory", 1), ("/sys/fs/cgroup/pids", 1),
                          ("/sys/fs/cgroup/cpu,cpuacct", 1), ("/sys/fs/cgroup/odd name", 1)}
    assert "cpu" in found[("/sys/fs/cgroup/cpu,cpuacct", 1)].controllers
    v1, v2 = _own_paths(_PROC_CGROUP)
    assert v1 == {"pids": "/user.slice", "memory": "/process_api/abc", "cpu": "/", "cpuacct": "/",
                  "freezer": "/elsewhere"}
    assert v2 == "/user.slice/session-1.scope"
    memory = found[("/sys/fs/cgroup/memory", 1)]
    assert _on_disk(memory, v1["memory"]) == Path("/sys/fs/cgroup/memory/process_api/abc")
    # A hierarchy mounted from a sub-cgroup shows only what is below it.
    odd = found[("/sys/fs/cgroup/odd name", 1)]
    assert _on_disk(odd, "/sandboxed/x") == Path("/sys/fs/cgroup/odd name/x")
    assert _on_disk(odd, v1["freezer"]) is None


def test_task_limits_only_lower_the_ceilings() -> None:
    ceilings = SandboxLimits(wall_time_s=100, memory_bytes=1 << 30, max_processes=64, max_file_bytes=1 << 20)
    lowered = ceilings.for_task(TaskLimits(wall_time_s=10, memory_bytes=8 << 30, max_processes=1,
                                           max_file_bytes=1 << 10))
    assert (lowered.wall_time_s, lowered.memory_bytes, lowered.max_processes, lowered.max_file_bytes) == (
        10, 1 << 30, 8, 1 << 10)
    with pytest.raises(InvalidArgument):
        SandboxLimits(memory_bytes=0)
    with pytest.raises(InvalidArgument):
        SandboxLimits(max_processes=4)
