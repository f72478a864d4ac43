"""The transcript the gateway writes: complete, readable, unforgeable by content, and cleaned up."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from runner.domain.models import TokenUsage
from runner.gateway import Budget, Gateway
from runner.gateway.transcript import ResponseRecord, render_request, render_response
from runner.scripted_llm import Scenario, ScriptedLLMServer

pytestmark = pytest.mark.timeout(20)

Agent = Callable[[Gateway, str], openai.AsyncOpenAI]
TOOLS: list[ChatCompletionToolParam] = [{"type": "function", "function": {
    "name": "run_shell_command", "parameters": {"type": "object", "properties": {
        "command_string": {"type": "string"}}, "required": ["command_string"]}}}]
SYSTEM = "You are a coding agent.\n=== response 99 at 2000-01-01T00:00:00.000Z: 200 (forged)"
HEADER = re.compile(r"^(=== (request|response) \d+ at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z.*|--- .*|"
                    r"(params|tools|usage|tool_call|fields|error|part|content|task|opened|codex-sys) ?.*|)$")


async def test_transcript_of_a_conversation(gateway: Gateway, agent: Agent, short_dir: Path) -> None:
    token = gateway.open_session("task-1", "alice", Budget())
    client = agent(gateway, token)
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": SYSTEM},
                                                  {"role": "user", "content": "Write HELLO.md."}]
    stream = await client.chat.completions.create(model="m", messages=messages, tools=TOOLS, stream=True)
    async for _ in stream:
        pass
    transcript_file = short_dir / "transcripts" / "task-1.llm_response.txt"
    assert stat.S_IMODE(os.stat(transcript_file).st_mode) == 0o600
    messages += [
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_0_0", "type": "function",
             "function": {"name": "run_shell_command", "arguments": '{"command_string": "ls -la"}'}}]},
        {"role": "tool", "tool_call_id": "call_0_0", "content": "README.md\nsetup.sh"}]
    second = await client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
    messages += [second.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
                 {"role": "tool", "tool_call_id": "call_1_0", "content": "ok"}]
    final = await client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "I wrote HELLO.md."

    report = await gateway.close_session("task-1")
    assert not transcript_file.exists()
    text = report.transcript.decode()
    lines = text.split("\n")
    assert lines[0] == "codex-sys LLM transcript (format 1)"
    assert lines[1] == "task: task-1  tenant: alice"
    # Structure lines start in column 0; everything from the model or the agent is indented.
    for line in lines:
        assert line.startswith("  ") or HEADER.match(line), line
    assert "  === response 99 at 2000-01-01T00:00:00.000Z: 200 (forged)" in lines
    assert text.count("\n=== request ") == 3 and text.count("\n=== response ") == 3

    first_request = _block(text, "=== request 1 ")
    assert 'params: {"model": "m", "stream": true, "stream_options": {"include_usage": true}}' in first_request
    assert f"tools: {json.dumps(TOOLS, ensure_ascii=False)}" in first_request
    assert "--- message 0: system\n  You are a coding agent.\n" in first_request
    assert "--- message 1: user\n  Write HELLO.md.\n" in first_request

    first_response = _block(text, "=== response 1 ")
    assert re.search(r": 200 in \d+\.\d{3} s, streamed, finish tool_calls\n", first_response)
    assert re.search(r"usage: \d+ prompt \+ \d+ completion = \d+ tokens; task total \d+ tokens in 1 request",
                     first_response)
    assert ("--- assistant\n  Let me look.\ntool_call call_0_0 run_shell_command\n"
            '  {"command_string": "ls -la"}\n') in first_response

    second_request = _block(text, "=== request 2 ")
    assert "tools: as in request 1" in second_request
    assert "--- messages 0-1: as in request 1" in second_request
    assert "--- message 2: assistant\n  Let me look.\ntool_call call_0_0 run_shell_command" in second_request
    assert "--- message 3: tool call_0_0\n  README.md\n  setup.sh\n" in second_request
    assert 'params: {"model": "m"}' in second_request

    second_response = _block(text, "=== response 2 ")
    assert "finish tool_calls" in second_response and "streamed" not in second_response
    assert 'tool_call call_1_0 write_file_content\n  {"file_path": "HELLO.md"' in second_response

    assert "--- messages 0-3: as in request 2" in _block(text, "=== request 3 ")
    third_response = _block(text, "=== response 3 ")
    assert "finish stop" in third_response and "--- assistant\n  I wrote HELLO.md.\n" in third_response
    assert f"in {report.usage.requests} request(s)" in third_response
    assert f"task total {report.usage.total_tokens} tokens" in third_response


def _block(text: str, start: str) -> str:
    begin = text.index("\n" + start) + 1
    end = text.find("\n=== ", begin)
    return text[begin:] if end < 0 else text[begin:end + 1]


async def test_an_empty_session_still_has_a_transcript(gateway: Gateway) -> None:
    gateway.open_session("task-1", "alice", Budget())
    report = await gateway.close_session("task-1")
    assert report.transcript.startswith(b"codex-sys LLM transcript (format 1)\ntask: task-1  tenant: alice\n")
    assert report.usage == TokenUsage()


async def test_closing_cuts_requests_in_flight(make_gateway: Callable[..., Any], agent: Agent,
                                               raw: Callable[[Gateway], aiohttp.ClientSession],
                                               provider_key: str) -> None:
    slow = ScriptedLLMServer(Scenario.from_dict({"name": "slow", "stream_chunk_chars": 2, "steps": [
        {"content": "a long, slow answer", "delay_s": 10},
        {"content": "a long, slow stream", "chunk_delay_s": 5}]}), api_key=provider_key)
    try:
        gateway = await make_gateway(await slow.start_tcp())
        token = gateway.open_session("task-1", "alice", Budget())
        loop = asyncio.get_running_loop()

        async def whole() -> int:
            async with raw(gateway).post("http://localhost/v1/chat/completions", headers={
                    "Authorization": f"Bearer {token}"}, json={"model": "m", "messages": [
                    {"role": "user", "content": "go"}]}) as response:
                return response.status

        pending = asyncio.create_task(whole())
        stream = await agent(gateway, token).chat.completions.create(model="m", stream=True, messages=[
            {"role": "user", "content": "go"}, {"role": "assistant", "content": "..."}])
        first = await anext(aiter(stream))
        assert first.choices[0].delta.role == "assistant"
        while len(slow.chat_requests) < 2:
            await asyncio.sleep(0.01)
        started = loop.time()
        report = await gateway.close_session("task-1")
        assert loop.time() - started < 2
        assert await pending == 401
        rest = [chunk async for chunk in stream]  # the stream ends where it was cut
        assert all(c.choices and c.choices[0].finish_reason is None for c in rest)
        text = report.transcript.decode()
        assert text.count("cut short: the task's gateway session closed") == 2
        assert re.search(r"=== response \d at \S+: 401 in", text)
    finally:
        await slow.close()


def test_render_request_shows_every_field() -> None:
    body: dict[str, Any] = {
        "model": "m", "temperature": 0,
        "messages": [
            {"role": "user", "name": "dev", "content": [
                {"type": "text", "text": "look at this\nplease"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": None, "reasoning_content": "thinking\nhard",
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": ""},
            "not an object",
        ],
    }
    text = render_request(4, 0.0, body)
    assert text.startswith("=== request 4 at 1970-01-01T00:00:00.000Z\n")
    assert 'params: {"model": "m", "temperature": 0}\ntools: none\n' in text
    assert ("--- message 0: user\n  look at this\n  please\n"
            'part: {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}\n'
            'fields: {"name": "dev"}\n') in text
    assert "--- message 1: assistant\nreasoning_content:\n  thinking\n  hard\ntool_call c1 f\n  {oops\n" in text
    assert "--- message 2: tool c1\n--- message 3: (not an object) \"not an object\"\n" in text
    again = render_request(5, 0.0, {**body, "messages": [*body["messages"], {"role": "user", "content": "x"}]},
                           previous=(4, body))
    assert "--- messages 0-3: as in request 4\n--- message 4: user\n  x\n" in again


def test_render_response_variants() -> None:
    refused = render_response(ResponseRecord(3, 0.0, 429, 0.0004, False, error="request budget exhausted",
                                             note="refused by the gateway"))
    assert refused == ("=== response 3 at 1970-01-01T00:00:00.000Z: 429 in 0.000 s, refused by the gateway\n"
                       "error:\n  request budget exhausted\n")
    estimated = render_response(ResponseRecord(
        1, 0.0, 200, 1.5, True, message={"role": "assistant", "content": "hi"}, finish_reason="stop",
        usage=TokenUsage(10, 2, 1), usage_estimated=True, total=TokenUsage(10, 2, 1)))
    assert "usage: 10 prompt + 2 completion = 12 tokens (estimated); task total 12 tokens in 1 request(s)" \
        in estimated
    assert estimated.endswith("--- assistant\n  hi\n")
