"""Resource limits of a local sandbox, and how each one is enforced on this kind of host.

Two layers, chosen once per executor by probing the host (see `cgroups.py`):

* cgroup v1 mode (memory and pids controllers writable): memory is capped by `memory.limit_in_bytes`
  (tmpfs pages count too; the kernel OOM-kills inside the sandbox), the number of processes and threads
  by `pids.max`, CPU bandwidth by `cpu.cfs_quota_us` when `cpus` is set. These limits are set per task,
  also on a warm sandbox started before its task was known.
* rlimit mode (no usable cgroups): memory is `RLIMIT_AS` per process and the process count is
  `RLIMIT_NPROC`. `RLIMIT_NPROC` is NOT enforced when the runner runs as root: the sandbox's user namespace
  maps its uid onto host uid 0, and the kernel exempts uid 0 from that check (measured: 64 processes
  under a limit of 20). So in this mode the executor also runs a watchdog that counts the sandbox's
  processes every 100 ms and kills the whole sandbox once there are more than `max_processes` (see
  `Sandbox.watch_process_count`). That stops runaway forking, but after the fact: an exponential fork
  bomb can make thousands of processes within those 100 ms, and each must be scheduled to die, which
  on a small host can starve it for seconds (measured here: 1.5 s to 20 s). Only a pids cgroup, which
  refuses the fork itself, really contains one; give the runner cgroups, or run it as a non-root user.

In both modes these rlimits apply to every process (set before `exec` of bubblewrap, inherited by all
that it starts): `RLIMIT_CPU` (CPU seconds per process; SIGXCPU then SIGKILL), `RLIMIT_FSIZE` (largest
file a process may write; SIGXFSZ), `RLIMIT_NOFILE`, and `RLIMIT_CORE` = 0. A warm sandbox is started
with the executor's ceilings; when it is handed its task, the task's own (lower) limits are applied to
the processes already running in it with prlimit(2), and new processes inherit them.

Wall time is enforced by the executor, which kills the whole sandbox when it runs out.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from runner.domain.errors import InvalidArgument
from runner.domain.models import TaskLimits

# The kernel sends SIGXCPU at the soft limit and SIGKILL at the hard one; this much grace in between
# lets a process that handles SIGXCPU say why it stops.
_CPU_GRACE_S = 5


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """The executor's ceilings. A task's `TaskLimits` may only lower the ones it names."""

    wall_time_s: float = 3600.0
    memory_bytes: int = 4 << 30
    max_processes: int = 512
    max_file_bytes: int = 1 << 30
    cpu_time_s: int = 3600  # per process (RLIMIT_CPU)
    cpus: float | None = None  # CPU bandwidth in cores (cgroup mode only); None: unlimited
    max_open_files: int = 4096
    tmpfs_bytes: int = 512 << 20  # size of /tmp and of /dev/shm, each (memory, counted in memory_bytes)

    def __post_init__(self) -> None:
        for name in ("wall_time_s", "memory_bytes", "max_processes", "max_file_bytes", "cpu_time_s",
                     "max_open_files", "tmpfs_bytes"):
            if getattr(self, name) <= 0:
                raise InvalidArgument(f"sandbox limit {name} must be positive, got {getattr(self, name)!r}")
        if self.cpus is not None and self.cpus <= 0:
            raise InvalidArgument(f"sandbox limit cpus must be positive or None, got {self.cpus!r}")
        if self.max_processes < 8:
            # bubblewrap, its init, the interpreter and a shell already take four.
            raise InvalidArgument(f"sandbox limit max_processes={self.max_processes} is too low to start (>= 8)")

    def for_task(self, task: TaskLimits) -> SandboxLimits:
        """These ceilings lowered by what the task asks for."""
        return replace(
            self,
            wall_time_s=min(self.wall_time_s, task.wall_time_s),
            memory_bytes=min(self.memory_bytes, task.memory_bytes),
            max_processes=max(8, min(self.max_processes, task.max_processes)),
            max_file_bytes=min(self.max_file_bytes, task.max_file_bytes),
        )


@dataclass(frozen=True, slots=True)
class OutputLimits:
    """Sizes of what comes back out of a sandbox."""

    max_output_bytes: int = 64 << 20  # each file of /output
    max_result_bytes: int = 1 << 20  # /output/result.json
    log_head_bytes: int = 1 << 20  # agent.log keeps its first ...
    log_tail_bytes: int = 1 << 20  # ... and last bytes

    def __post_init__(self) -> None:
        for name in ("max_output_bytes", "max_result_bytes", "log_head_bytes", "log_tail_bytes"):
            if getattr(self, name) <= 0:
                raise InvalidArgument(f"output limit {name} must be positive, got {getattr(self, name)!r}")


Rlimit = tuple[int, int, int]  # (resource, soft, hard)


def rlimits(limits: SandboxLimits, *, cgroup_enforced: bool) -> tuple[Rlimit, ...]:
    """The rlimits every process of the sandbox runs under."""
    cpu = limits.cpu_time_s
    out: list[Rlimit] = [
        (resource.RLIMIT_CPU, cpu, cpu + _CPU_GRACE_S),
        (resource.RLIMIT_FSIZE, limits.max_file_bytes, limits.max_file_bytes),
        (resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if not cgroup_enforced:
        out.append((resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes))
        out.append((resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes))
    return tuple(out)


def set_own_rlimits(limits: Iterable[Rlimit]) -> None:
    """Apply rlimits to the calling process (used between fork and exec)."""
    for res, soft, hard in limits:
        resource.setrlimit(res, (soft, hard))


def apply_to_processes(pids: Iterable[int], limits: Iterable[Rlimit]) -> None:
    """Apply rlimits to processes already running (prlimit(2)); ones that have exited are skipped."""
    todo = tuple(limits)
    for pid in pids:
        for res, soft, hard in todo:
            try:
                resource.prlimit(pid, res, (soft, hard))
            except ProcessLookupError:
                break


def process_tree(root_pid: int, stop_after: int | None = None) -> list[int]:
    """`root_pid` and all its descendants, read from /proc/<pid>/task/<tid>/children; at most a few
    more than `stop_after` when given (enough to tell that a limit is exceeded, at a bounded cost)."""
    found: list[int] = []
    stack = [root_pid]
    seen: set[int] = set()
    while stack and (stop_after is None or len(found) <= stop_after):
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            stack.extend(int(c) for c in children)
    return found
