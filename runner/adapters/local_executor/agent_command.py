"""What runs inside a local sandbox: by default the agent package on the host's own Python.

The sandbox has no Python of its own, so the agent runs on the interpreter the runner runs on, bound
read-only. In a virtual environment that is the base interpreter behind it (the venv's site-packages,
with the runner's dependencies, stay outside). The installation is bound at its own path, because a
shared libpython is found through an absolute RUNPATH; an installation under /usr is already there.
The interpreter runs with `-S`: no site-packages, no .pth files, a faster start; the agent uses the
standard library only. Only the `agent` package is bound (at /opt/codex/agent, on PYTHONPATH), never
the runner's code.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import agent
from runner.adapters.local_executor.bwrap_args import AGENT_PYTHONPATH, check_bind_destination


def base_interpreter() -> Path:
    """The real interpreter behind `sys.executable` (through a venv and symlinks)."""
    return Path(getattr(sys, "_base_executable", None) or sys.executable).resolve()


def python_installation_binds() -> tuple[tuple[Path, str], ...]:
    """Read-only binds that make `base_interpreter()` runnable in the sandbox."""
    binds: list[tuple[Path, str]] = []
    for prefix in sorted({Path(sys.base_prefix).resolve(), Path(sys.base_exec_prefix).resolve()}):
        if prefix == Path("/usr") or Path("/usr") in prefix.parents:
            continue
        binds.append((prefix, str(prefix)))
    return tuple(binds)


@dataclass(frozen=True, slots=True)
class AgentCommand:
    """The command a sandbox runs and the host folders it needs, bound read-only at the given paths.

    The command must read one line (the task spec) from stdin, and may start (imports, setup) before
    that line arrives: warm sandboxes wait there.
    """

    argv: tuple[str, ...]
    ro_binds: tuple[tuple[Path, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("the agent command is empty")
        for _, dest in self.ro_binds:
            check_bind_destination(dest)

    @classmethod
    def default(cls) -> AgentCommand:
        """`python -S -m agent` with the agent package at /opt/codex/agent."""
        package = Path(agent.__file__).resolve().parent
        return cls(argv=(str(base_interpreter()), "-S", "-m", "agent"),
                   ro_binds=((package, f"{AGENT_PYTHONPATH}/agent"),))
