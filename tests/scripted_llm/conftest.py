from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import openai
import pytest

from runner.scripted_llm import Scenario, ScriptedLLMServer

TOOLS_DOC = {
    "name": "tools",
    "steps": [
        {"content": "Let me look.",
         "tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "ls -la /workspace"}},
                        {"name": "read_file_content", "arguments": {"file_path": "README.md", "limit": 20}}]},
        {"content": None, "tool_calls": [{"name": "edit_file_content", "raw_arguments": "{oops not json"}]},
    ],
    "final": "All done, the README now says hello.",
    "stream_chunk_chars": 5,
}


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., ScriptedLLMServer]]:
    """Builds servers that are closed after the test."""
    servers: list[ScriptedLLMServer] = []

    def make(*args: object, **kwargs: object) -> ScriptedLLMServer:
        server = ScriptedLLMServer(*args, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def tools_server(scripted: Callable[..., ScriptedLLMServer]) -> ScriptedLLMServer:
    return scripted(Scenario.from_dict(TOOLS_DOC), api_key="sk-test")


@pytest.fixture
async def client(tools_server: ScriptedLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    base_url = await tools_server.start_tcp("127.0.0.1", 0)
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0,
                                  _strict_response_validation=True) as c:
        yield c
