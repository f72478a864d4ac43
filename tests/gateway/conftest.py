"""Gateway tests run a real gateway on a real unix socket in front of a real (scripted) provider.

`RecordingSink` is a small working implementation of the `AgentEventSink` port that keeps what it is
given, and can be told to fail, to see the gateway survive a broken sink.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import openai
import pytest

from agent.wire import AgentEvent
from runner.config import LLMSettings
from runner.domain.models import TokenUsage
from runner.gateway import AGENT_BASE_URL, Gateway, GatewayOptions
from runner.scripted_llm import Scenario, ScriptedLLMServer

PROVIDER_KEY = "sk-provider-secret-0123456789"
DEFAULT_MODEL = "house-model"

CONVERSATION = {
    "name": "gateway",
    "stream_chunk_chars": 4,
    "steps": [
        {"content": "Let me look.",
         "tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "ls -la"}}]},
        {"content": None,
         "tool_calls": [{"name": "write_file_content",
                         "arguments": {"file_path": "HELLO.md", "content": "# Hello\nworld\n"}}]},
    ],
    "final": "I wrote HELLO.md.",
}


@dataclass
class RecordingSink:
    events: list[tuple[str, list[AgentEvent]]] = field(default_factory=list)
    usage: list[tuple[str, TokenUsage, TokenUsage]] = field(default_factory=list)
    fail_events: bool = False
    fail_usage: bool = False

    async def agent_events(self, task_id: str, events: Sequence[AgentEvent]) -> None:
        if self.fail_events:
            raise RuntimeError("event store is down")
        self.events.append((task_id, list(events)))

    async def token_usage(self, task_id: str, usage: TokenUsage, total: TokenUsage) -> None:
        if self.fail_usage:
            raise RuntimeError("event store is down")
        self.usage.append((task_id, usage, total))


@pytest.fixture
def short_dir() -> Any:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="gw-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def provider() -> AsyncIterator[ScriptedLLMServer]:
    server = ScriptedLLMServer(Scenario.from_dict(CONVERSATION), api_key=PROVIDER_KEY)
    yield server
    await server.close()


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(short_dir: Path, sink: RecordingSink) -> AsyncIterator[GatewayFactory]:
    gateways: list[Gateway] = []

    async def make(base_url: str, *, api_key: str | None = PROVIDER_KEY, name: str = "gw.sock",
                   options: GatewayOptions | None = None) -> Gateway:
        gateway = Gateway(LLMSettings(base_url=base_url, api_key=api_key, model=DEFAULT_MODEL), sink,
                          short_dir / name, short_dir / "transcripts", options)
        await gateway.start()
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        await gateway.close()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, provider: ScriptedLLMServer) -> Gateway:
    return await make_gateway(await provider.start_tcp())


@pytest.fixture
def provider_key() -> str:
    return PROVIDER_KEY


@pytest.fixture
async def agent() -> AsyncIterator[Callable[[Gateway, str], openai.AsyncOpenAI]]:
    """Makes the OpenAI client as an agent in the sandbox uses it: over the gateway's unix socket."""
    clients: list[openai.AsyncOpenAI] = []

    def make(gateway: Gateway, token: str) -> openai.AsyncOpenAI:
        http = httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(uds=str(gateway.socket_path)),
                                  timeout=30.0)
        client = openai.AsyncOpenAI(base_url=AGENT_BASE_URL, api_key=token, http_client=http, max_retries=0,
                                    _strict_response_validation=True)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Gateway], aiohttp.ClientSession]]:
    """Makes a plain HTTP client on the gateway's socket, to see status codes, headers and bytes."""
    sessions: list[aiohttp.ClientSession] = []

    def make(gateway: Gateway) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(gateway.socket_path)))
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()
