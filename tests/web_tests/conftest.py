"""One real runner for the task-page tests (`codex-sys runner serve`): the gRPC API on TCP with a token
book of two tenants, the HTTP side on a free port, a worker with real bubblewrap sandboxes, and the
scripted model (the only scripted part). Two tasks, one per tenant, have run to completion on
examples/calc before the tests start; the `slow` model runs for a few seconds, for the live tests.

Shared by the package (one runner process, one event loop) to keep these tests fast.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest_asyncio
from servers import free_port

from runner.cli.snapshotting import snapshot_workspace
from runner.client.connection import RunnerClient
from runner.client.upload import submit_task
from runner.config import HomeLayout
from runner.domain import models as m
from runner.scripted_llm import Scenario, ScriptedLLMServer

REPO = Path(__file__).resolve().parents[2]
TOKEN_A = "web-token-tenant-a-member-0123456789"
TOKEN_A_VIEWER = "web-token-tenant-a-viewer-0123456789"
TOKEN_B = "web-token-tenant-b-member-0123456789"

FAST = Scenario.from_dict({
    "name": "page-fast",
    "steps": [
        {"content": "Let me run the tests first.",
         "tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "python3 -m unittest -q"}}]},
        {"content": "`divide` uses floor division.",
         "tool_calls": [{"name": "edit_file_content",
                         "arguments": {"file_path": "calc.py", "old_string": "    return a // b\n",
                                       "new_string": "    return a / b\n"}}]},
        {"content": None,
         "tool_calls": [{"name": "write_file_content",
                         "arguments": {"file_path": "NOTES.md", "content": "# Notes\n\n<b>divide</b> fixed.\n"}}]},
    ],
    "final": "Fixed `divide` in calc.py and wrote NOTES.md.",
})
SLOW = Scenario.from_dict({
    "name": "page-slow",
    "steps": [
        {"content": "Waiting a moment.",
         "tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "sleep 3; echo slept"}}]},
        {"content": None,
         "tool_calls": [{"name": "write_file_content", "arguments": {"file_path": "LATER.md", "content": "later\n"}}]},
    ],
    "final": "Wrote LATER.md after a pause.",
})


@dataclass
class Site:
    root: Path
    home: Path
    grpc: str
    url: str
    task_a: m.TaskRecord
    task_b: m.TaskRecord

    def client(self, token: str) -> RunnerClient:
        return RunnerClient(self.grpc, token=token)

    async def submit(self, token: str, model: str = "page-fast") -> m.TaskRecord:
        return await submit(self.grpc, self.root, token, model)

    async def wait(self, token: str, task_id: str) -> m.TaskRecord:
        return await wait(self.grpc, token, task_id)


async def submit(grpc: str, root: Path, token: str, model: str = "page-fast") -> m.TaskRecord:
    snapshot, _ = await snapshot_workspace(root / "calc", HomeLayout(root / "cli"), [])
    async with RunnerClient(grpc, token=token) as client:
        task, _ = await submit_task(client, snapshot.manifest, snapshot.sources, "Fix divide in calc.py",
                                    model=model)
    return task


async def wait(grpc: str, token: str, task_id: str, timeout: float = 60) -> m.TaskRecord:
    async with RunnerClient(grpc, token=token) as client:
        async def until_result() -> None:
            async for event in client.watch(task_id):
                if event.is_result:
                    return
        await asyncio.wait_for(until_result(), timeout)
        return await client.get_task(task_id)


async def _until_up(url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if proc.returncode is not None:
                raise AssertionError(f"the runner exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                async with session.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"the runner's HTTP side did not come up:\n{log.read_text()[-3000:]}")


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def site() -> AsyncIterator[Site]:
    async with running_site() as running:
        yield running


@asynccontextmanager
async def running_site() -> AsyncIterator[Site]:
    """`codex-sys runner serve` in its own process (its worker forks sandboxes, which a process running
    gRPC client threads must not do), the scripted model in this one."""
    root = Path(tempfile.mkdtemp(prefix="cxweb", dir="/tmp"))
    llm = ScriptedLLMServer(scenarios={"page-fast": FAST, "page-slow": SLOW})
    proc: asyncio.subprocess.Process | None = None
    try:
        shutil.copytree(REPO / "examples" / "calc", root / "calc")
        tokens = root / "tokens"
        tokens.write_text(f"{TOKEN_A} tenant-a member\n{TOKEN_A_VIEWER} tenant-a viewer\n{TOKEN_B} tenant-b member\n")
        base_url = await llm.start_tcp("127.0.0.1", 0)
        grpc_port, http_port = free_port(), free_port()
        home = root / "home"
        env = {**os.environ, "CODEX_SYS_HOME": str(home), "OPENAI_BASE_URL": base_url,
               "OPENAI_API_KEY": "sk-scripted", "CODEX_SYS_MODEL": "page-fast", "CODEX_SYS_LOG_LEVEL": "WARNING"}
        for name in ("CODEX_SYS_HTTP_LISTEN", "CODEX_SYS_PUBLIC_URL", "CODEX_SYS_SHARE_KEY_FILE", "CODEX_SYS_TOKENS",
                     "CODEX_SYS_TOKEN_FILE"):
            env.pop(name, None)
        log = root / "runner.log"
        with open(log, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runner.cli.main", "runner", "serve", "--embedded", "--workers", "2",
                "--listen", f"127.0.0.1:{grpc_port}", "--token-file", str(tokens),
                "--http-listen", f"127.0.0.1:{http_port}", env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=out)
        url = f"http://127.0.0.1:{http_port}"
        await _until_up(url, proc, log)
        grpc = f"127.0.0.1:{grpc_port}"
        a, b = await asyncio.gather(submit(grpc, root, TOKEN_A), submit(grpc, root, TOKEN_B))
        task_a, task_b = await asyncio.gather(wait(grpc, TOKEN_A, a.id), wait(grpc, TOKEN_B, b.id))
        assert task_a.state is m.TaskState.COMPLETED, task_a.reason
        assert task_b.state is m.TaskState.COMPLETED, task_b.reason
        yield Site(root, home, grpc, url, task_a, task_b)
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await llm.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="package")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def share_link(site: Site, token: str, task_id: str, expires_s: int = 600) -> str:
    async with site.client(token) as client:
        url, _ = await client.page_link(task_id, expires_s)
    return url
