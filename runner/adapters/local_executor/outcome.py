"""How a sandbox ended, in words a person can act on (`SandboxOutcome.detail`).

bubblewrap passes on its command's status as an exit code: 128 + N when the command was killed by
signal N. So an exit code above 128 is read as a signal (an agent that exits with 137 by itself would
be misread; ours does not). When the sandbox was killed by the executor (wall time, cancellation),
bubblewrap itself dies by SIGKILL. The cgroup counters tell an OOM kill and refused forks apart from
other deaths.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from runner.adapters.local_executor.limits import SandboxLimits

_MIB = 1 << 20
_NSIG = 65


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True, slots=True)
class ExitFacts:
    returncode: int | None  # of the bubblewrap process
    timed_out: bool
    phase: str  # where the time ran out: "materialising", "running"
    oom_kills: int
    fork_refusals: int
    process_limit_exceeded: bool  # killed by the watchdog of rlimit mode
    log_omitted: int
    setup_error: str  # bubblewrap's own error line, if it failed to set up
    notes: tuple[str, ...]


def exit_code_of(returncode: int | None, timed_out: bool) -> int | None:
    """The agent's exit code, None when it was killed by a signal (or by us)."""
    if timed_out or returncode is None or returncode < 0:
        return None
    if 128 < returncode < 128 + _NSIG:
        return None
    return returncode


def describe(facts: ExitFacts, limits: SandboxLimits) -> str:
    parts: list[str] = []
    rc = facts.returncode
    if facts.timed_out:
        parts.append(f"wall time of {limits.wall_time_s:g} s exceeded while {facts.phase}; the sandbox was killed")
    elif rc is None:
        parts.append("the sandbox did not report an exit status")
    elif rc < 0:
        parts.append(f"the sandbox was killed by {signal_name(-rc)}")
    elif 128 < rc < 128 + _NSIG:
        sig = rc - 128
        parts.append(f"the agent was killed by {signal_name(sig)} (exit status {rc})")
        if sig == signal.SIGXCPU:
            parts.append(f"it used up its CPU time limit of {limits.cpu_time_s} s")
        elif sig == signal.SIGXFSZ:
            parts.append(f"it wrote a file over the limit of {limits.max_file_bytes} bytes")
    elif facts.setup_error:
        parts.append(f"bubblewrap could not set up the sandbox (exit code {rc}): {facts.setup_error}")
    else:
        parts.append(f"the agent exited with code {rc}")
    if facts.oom_kills:
        parts.append(f"out of memory: the OOM killer stopped {facts.oom_kills} process(es) at the memory limit "
                     f"of {limits.memory_bytes // _MIB} MiB")
    if facts.process_limit_exceeded:
        parts.append(f"the process limit of {limits.max_processes} was exceeded; the sandbox was killed")
    if facts.fork_refusals:
        parts.append(f"the process limit of {limits.max_processes} was reached "
                     f"({facts.fork_refusals} fork(s) refused)")
    if facts.log_omitted:
        parts.append(f"agent.log truncated: {facts.log_omitted} bytes of output omitted from the middle")
    parts.extend(facts.notes)
    return "; ".join(parts)
