"""Helpers shared by the agent's tests (imported by name: `from agent_testing import ...`).

`RecordingSink` is a working `EventSink` that keeps what it is given (the agent's parts only ever
call `emit`). `run_agent` starts `python -m agent` the way a sandbox does — a bare interpreter (`-S`:
no site-packages, so a third-party import would fail) with only the repository on `PYTHONPATH` — feeds
it a spec line and collects its exit status, stderr and outputs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.baseline import ShadowRepo
from agent.paths import Workspace
from agent.tools import Toolbox, ToolResult
from agent.wire import AgentEvent, AgentResult
from runner.config import LLMSettings
from runner.domain.models import TokenUsage
from runner.gateway import Budget, Gateway
from runner.scripted_llm import Scenario, ScriptedLLMServer

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "sk-provider-key-never-in-the-sandbox"


@dataclass
class RecordingSink:
    events: list[AgentEvent] = field(default_factory=list)

    def emit(self, event: AgentEvent) -> None:
        self.events.append(event)


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not: it has finished and awaits its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, within_s: float = 3.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def make_toolbox(ws: Path, repo: ShadowRepo, *, timeout_s: float = 20.0, limit: int = 16_000) -> Toolbox:
    return Toolbox(Workspace(ws), repo.list_files, command_timeout_s=timeout_s, output_limit=limit)


def call(toolbox: Toolbox, name: str, **arguments: Any) -> ToolResult:
    return toolbox.execute(name, json.dumps(arguments))


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Plain git in `cwd`, isolated from the machine's configuration."""
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C",
           "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=check)


@dataclass
class AgentRun:
    exit_code: int
    stderr: str
    output: Path

    def result(self) -> AgentResult:
        return AgentResult.from_json((self.output / "result.json").read_bytes())

    def file(self, name: str) -> str:
        return (self.output / name).read_text()


def spec_dict(ws: Path, output: Path, socket: Path, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "task_id": "t-agent-test",
        "token": "tok-SECRET-agent-test",
        "instruction": "Do the scripted thing.",
        "model": "scripted",
        "workspace": str(ws),
        "output": str(output),
        "gateway_socket": str(socket),
        "max_steps": 10,
        "command_timeout_s": 20.0,
        "setup_timeout_s": 20.0,
    }
    spec.update(overrides)
    return spec


async def run_agent(spec_line: bytes, output: Path, *, timeout_s: float = 60.0) -> AgentRun:
    """Run `python -m agent` as a sandbox does and wait for it; checks it left its temp folder clean."""
    tmp = output.parent / "agent-tmp"
    tmp.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT), "HOME": str(output.parent),
           "TMPDIR": str(tmp), "LC_ALL": "C.UTF-8"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-S", "-m", "agent", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=output.parent,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(spec_line), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert stdout == b"", "the agent must not print to stdout"
    assert proc.returncode is not None
    assert list(tmp.iterdir()) == [], "the agent must remove its shadow repository"
    return AgentRun(proc.returncode, stderr.decode(), output)


# ---- the runner side: a real gateway in front of the scripted model -------------------------------------


@dataclass
class GatewaySink:
    """A working `AgentEventSink` for the gateway: keeps every event with the time it arrived."""

    received: list[tuple[float, str, AgentEvent]] = field(default_factory=list)
    posts: int = 0

    async def agent_events(self, task_id: str, events: Sequence[AgentEvent]) -> None:
        now = time.monotonic()
        self.posts += 1
        self.received.extend((now, task_id, e) for e in events)

    async def token_usage(self, task_id: str, usage: TokenUsage, total: TokenUsage) -> None:
        pass

    @property
    def events(self) -> list[AgentEvent]:
        return [e for _, _, e in self.received]


@dataclass
class Stack:
    """The scripted provider, the gateway on a unix socket, and the sink behind it."""

    provider: ScriptedLLMServer
    gateway: Gateway
    sink: GatewaySink
    socket: Path

    def open_session(self, task_id: str = "t-agent-test", budget: Budget | None = None) -> str:
        return self.gateway.open_session(task_id, "tenant-a", budget or Budget(requests_per_second=1000))

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.provider.chat_requests]


async def start_stack(folder: Path, scenario: dict[str, Any]) -> Stack:
    provider = ScriptedLLMServer(Scenario.from_dict(scenario), api_key=PROVIDER_KEY)
    base_url = await provider.start_tcp("127.0.0.1", 0)
    sink = GatewaySink()
    socket = folder / "gw.sock"
    gateway = Gateway(LLMSettings(base_url=base_url, api_key=PROVIDER_KEY, model="scripted"), sink, socket,
                      folder / "transcripts")
    try:
        await gateway.start()
    except BaseException:
        await provider.close()
        raise
    return Stack(provider, gateway, sink, socket)


async def stop_stack(stack: Stack) -> None:
    await stack.gateway.close()
    await stack.provider.close()
