"""End-to-end fixtures: the real `codex-sys` console script, a runner, and a scripted OpenAI-compatible
provider on a real TCP port that the runner reaches through its gateway, holding a provider key the
sandbox must never see.

Every test that uses `codex_factory` runs against both deployments (the `deployment` fixture):

* `embedded`: the runner the CLI starts on demand (real gRPC over its unix socket, SQLite, a local CAS,
  real bubblewrap sandboxes);
* `distributed`: a `codex-sys runner serve` process (API only, TCP with a bearer token) and a
  `codex-sys worker` process (its own home, gateway and sandboxes) on the session's real NATS JetStream
  and MinIO, each test with its own streams and bucket (`deployments.Distributed`).

A test that is about one deployment only says so with `@pytest.mark.parametrize("deployment", [...],
indirect=True)`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.scripted_llm import Scenario, ScriptedLLMServer

from .deployments import Distributed

REPO = Path(__file__).resolve().parents[2]
CODEX = str(Path(sys.executable).parent / "codex-sys")
PROVIDER_KEY = "sk-test-provider-key-4f1c9a7e3b2d"
HOST_SECRET = "host-secret-value-8d2e61"

pytestmark = pytest.mark.e2e


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def result(self) -> dict[str, Any]:
        lines = self.json_lines()
        assert lines and lines[-1]["type"] == "result", self.stderr[-3000:]
        return lines[-1]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [line for line in self.json_lines() if line["type"] == "event"]


@dataclass
class Codex:
    """Runs the real CLI against a private CODEX_SYS_HOME and the test's provider."""

    home: Path
    env: dict[str, str]
    started: list[str] = field(default_factory=list)
    cluster: Distributed | None = None

    async def run(self, *args: str, cwd: Path | None = None, timeout: float = 60) -> CliResult:
        proc = await asyncio.create_subprocess_exec(
            CODEX, *args, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise AssertionError(f"codex-sys {' '.join(args)} did not finish in {timeout} s:\n"
                                 f"{err.decode()[-3000:]}") from None
        return CliResult(proc.returncode or 0, out.decode(), err.decode())

    async def start(self, *args: str, cwd: Path | None = None) -> asyncio.subprocess.Process:
        """The CLI in the background; its stderr goes to `stderr_file` (a pipe nobody reads could fill)."""
        with open(self.stderr_file, "ab") as err:
            return await asyncio.create_subprocess_exec(
                CODEX, *args, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)

    @property
    def stderr_file(self) -> Path:
        return self.home.parent / f"{self.home.name}-cli-stderr.txt"

    def runner_log(self) -> str:
        if self.cluster is not None:
            return self.cluster.logs()
        path = self.home / "runner.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Provider:
    server: ScriptedLLMServer
    base_url: str

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.fixture
async def provider_factory() -> AsyncIterator[Any]:
    servers: list[ScriptedLLMServer] = []

    async def start(scenario: Scenario | dict[str, Any]) -> Provider:
        if isinstance(scenario, dict):
            scenario = Scenario.from_dict(scenario)
        server = ScriptedLLMServer(default=scenario, api_key=PROVIDER_KEY)
        servers.append(server)
        return Provider(server, await server.start_tcp("127.0.0.1", 0))

    yield start
    for server in servers:
        await server.close()


def codex_env(home: Path, provider: Provider) -> dict[str, str]:
    """The environment of a `codex-sys` process (CLI, runner or language server) for a test: a private
    home, the scripted provider, one warm sandbox, and a secret the sandbox must never see."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_SYS_"))}
    env.update(CODEX_SYS_HOME=str(home), OPENAI_BASE_URL=provider.base_url, OPENAI_API_KEY=PROVIDER_KEY,
               CODEX_SYS_MODEL="scripted-e2e", CODEX_SYS_WARM_POOL="1", CODEX_SYS_TEST_SECRET=HOST_SECRET,
               CODEX_SYS_LOG_LEVEL="INFO")
    return env


DEPLOYMENTS = ("embedded", "distributed")


@pytest.fixture(params=DEPLOYMENTS)
def deployment(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def codex_factory(short_tmp: Path, deployment: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    made: list[Codex] = []

    async def make(provider: Provider) -> Codex:
        home = short_tmp / f"home{len(made)}"
        env = codex_env(home, provider)
        if deployment == "embedded":
            codex = Codex(home, env)
        else:
            root = short_tmp / f"cluster{len(made)}"
            root.mkdir()
            base = {k: v for k, v in env.items() if k != "CODEX_SYS_HOME"}
            cluster = Distributed(CODEX, root, request.getfixturevalue("nats_server"),
                                  request.getfixturevalue("minio_server"), base)
            codex = Codex(home, env, cluster=cluster)  # registered first: closed even if a start fails
            made.append(codex)
            await cluster.start_runner()
            await cluster.start_worker()
            codex.env = cluster.client_env(home)
            return codex
        made.append(codex)
        return codex

    yield make
    for codex in made:
        if codex.cluster is not None:
            await codex.cluster.close()
        else:
            await codex.run("runner", "stop", timeout=30)


async def read_until_tool_call(proc: asyncio.subprocess.Process, codex: Codex) -> str:
    """Read a `codex-sys run --json` process's output until the agent starts a tool; the task id."""
    assert proc.stdout is not None
    task_id = ""
    seen: list[bytes] = []
    async with asyncio.timeout(60):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                agent_log = ""
                if task_id:
                    folder = codex.home.parent / "agent-log"
                    got = await codex.run("artifacts", task_id, "--name", "agent.log", "--out", str(folder))
                    if got.returncode == 0:
                        agent_log = (folder / "agent.log").read_text(errors="replace")
                err = codex.stderr_file.read_text(errors="replace") + "\nAGENT LOG:\n" + agent_log[-4000:]
                raise AssertionError(f"codex-sys run ended early ({await proc.wait()}):\n{err[-3000:]}\n"
                                     f"its output:\n{b''.join(seen).decode()[-3000:]}\n"
                                     f"runner log:\n{codex.runner_log()[-5000:]}")
            seen.append(raw)
            line = json.loads(raw)
            task_id = task_id or line.get("task_id", "")
            if line.get("kind") == "tool_call_started":
                return task_id


def copy_example(dest: Path, name: str = "calc") -> Path:
    target = dest / name
    shutil.copytree(REPO / "examples" / name, target)
    return target


def all_text_of(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.iterdir()) if p.is_file())
