"""The scripted server on the wire: decoded by the real `openai` client with strict validation, plus raw
SSE checks, so drift from the Chat Completions protocol shows up here."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from pathlib import Path

import aiohttp
import openai
import pytest
from openai.types.chat import (
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)
from strict_openai import assert_no_unknown_fields

from runner.scripted_llm import Scenario, ScriptedLLMServer

pytestmark = pytest.mark.timeout(20)

USER: list[ChatCompletionMessageParam] = [{"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "Make the README say hello."}]
TOOLS: list[ChatCompletionToolParam] = [{"type": "function", "function": {
    "name": "run_shell_command", "description": "run a command",
    "parameters": {"type": "object", "properties": {"command_string": {"type": "string"}},
                   "required": ["command_string"]}}}]


def function_calls(message: ChatCompletionMessage) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


def after_turns(turns: int) -> list[ChatCompletionMessageParam]:
    """A conversation in which the assistant has already answered `turns` times."""
    messages: list[ChatCompletionMessageParam] = list(USER)
    for i in range(turns):
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}_0", "type": "function",
             "function": {"name": "run_shell_command", "arguments": '{"command_string": "ls"}'}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}_0", "content": "README.md"})
    return messages


async def test_non_streaming_tool_calls(client: openai.AsyncOpenAI, tools_server: ScriptedLLMServer) -> None:
    response = await client.chat.completions.create(model="gpt-test", messages=USER,
                                                    tools=TOOLS)
    assert_no_unknown_fields(response)
    assert response.object == "chat.completion"
    assert response.id.startswith("chatcmpl-")
    assert response.model == "gpt-test"
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Let me look."
    calls = function_calls(choice.message)
    assert [c.id for c in calls] == ["call_0_0", "call_0_1"]
    assert [c.type for c in calls] == ["function", "function"]
    assert [c.function.name for c in calls] == ["run_shell_command", "read_file_content"]
    assert json.loads(calls[1].function.arguments) == {"file_path": "README.md", "limit": 20}
    # Usage: about four characters per token, of the messages and tools sent, and of the answer.
    assert response.usage is not None
    prompt_chars = len(json.dumps(USER, ensure_ascii=False)) + len(json.dumps(TOOLS, ensure_ascii=False))
    assert response.usage.prompt_tokens == math.ceil(prompt_chars / 4)
    answer_chars = len("Let me look.") + sum(len(c.function.name + c.function.arguments) for c in calls)
    assert response.usage.completion_tokens == math.ceil(answer_chars / 4)
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    recorded = tools_server.chat_requests[-1]
    assert recorded.status == 200
    assert recorded.header("authorization") == "Bearer sk-test"
    assert recorded.body["messages"] == USER
    assert recorded.monotonic > 0 and recorded.wall_time > 1e9


async def test_steps_follow_assistant_turns_then_final(client: openai.AsyncOpenAI) -> None:
    second = await client.chat.completions.create(model="m", messages=after_turns(1))
    calls = function_calls(second.choices[0].message)
    assert second.choices[0].message.content is None
    assert calls[0].id == "call_1_0"
    assert calls[0].function.arguments == "{oops not json"
    final = await client.chat.completions.create(model="m", messages=after_turns(2))
    assert_no_unknown_fields(final)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "All done, the README now says hello."
    assert final.choices[0].message.tool_calls is None
    # Stateless: asking for the first step again gives the first step again.
    again = await client.chat.completions.create(model="m", messages=USER)
    assert (again.choices[0].message.tool_calls or [])[0].id == "call_0_0"


async def test_streaming_chunks_are_strict_and_tool_calls_reassemble(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    for i, chunk in enumerate(chunks):
        assert_no_unknown_fields(chunk, f"chunk {i}")
        assert chunk.object == "chat.completion.chunk"
    assert len({c.id for c in chunks}) == 1
    assert len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Let me look."
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            if delta.function is not None:
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
    assert calls[0] == {"id": "call_0_0", "name": "run_shell_command",
                        "arguments": json.dumps({"command_string": "ls -la /workspace"})}
    assert json.loads(calls[1]["arguments"]) == {"file_path": "README.md", "limit": 20}
    # Arguments arrive in pieces (stream_chunk_chars is 5), as a real model streams them.
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.tool_calls) > 4
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["tool_calls"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


async def test_streaming_helper_assembles_the_message(client: openai.AsyncOpenAI) -> None:
    async with client.chat.completions.stream(model="m", messages=after_turns(0),
                                              tools=TOOLS) as stream:
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Let me look."
    assert [c.function.arguments for c in function_calls(message)] == [
        json.dumps({"command_string": "ls -la /workspace"}), json.dumps({"file_path": "README.md", "limit": 20})]


async def test_streaming_without_usage_and_final_message(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="m", messages=after_turns(5),
                                                  stream=True)
    chunks = [chunk async for chunk in stream]
    for chunk in chunks:
        assert_no_unknown_fields(chunk)
        assert chunk.usage is None
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "All done, the README now says hello."
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_raw_sse_framing(tools_server: ScriptedLLMServer) -> None:
    base_url = await tools_server.start_tcp()
    async with aiohttp.ClientSession() as http, http.post(
            f"{base_url}/chat/completions", headers={"Authorization": "Bearer sk-test"},
            json={"model": "m", "messages": USER, "stream": True}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = (await response.read()).decode()
    events = raw.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: {")
        json.loads(event.removeprefix("data: "))


async def test_expect_in_prompt(scripted: Callable[..., ScriptedLLMServer]) -> None:
    server = scripted(Scenario.from_dict({"name": "agents-md", "steps": [
        {"content": "ok", "expect_in_prompt": ["Always run the tests", "README"]}]}))
    base_url = await server.start_tcp()
    async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="m", messages=USER)
        assert info.value.status_code == 400
        assert "'Always run the tests'" in info.value.message
        assert "step 0" in info.value.message
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": [{"type": "text", "text": "AGENTS.md: Always run the tests"}]}, *USER]
        ok = await client.chat.completions.create(model="m", messages=messages)
        assert ok.choices[0].message.content == "ok"


async def test_fault_steps(scripted: Callable[..., ScriptedLLMServer]) -> None:
    server = scripted(Scenario.from_dict({"name": "faults", "steps": [
        {"content": "recovered", "error": {"status": 503, "message": "overloaded", "times": 2}},
        {"error": {"status": 500, "message": "always broken"}}]}))
    base_url = await server.start_tcp()
    async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError, match="overloaded"):
                await client.chat.completions.create(model="m", messages=USER)
        ok = await client.chat.completions.create(model="m", messages=USER)
        assert ok.choices[0].message.content == "recovered"
        for _ in range(3):
            with pytest.raises(openai.InternalServerError, match="always broken"):
                await client.chat.completions.create(model="m", messages=after_turns(1))
    assert [r.status for r in server.chat_requests] == [503, 503, 200, 500, 500, 500]


async def test_delays_and_chunk_delays(scripted: Callable[..., ScriptedLLMServer]) -> None:
    server = scripted(Scenario.from_dict({"name": "slow", "stream_chunk_chars": 2, "steps": [
        {"content": "abcdef", "delay_s": 0.2, "chunk_delay_s": 0.05}]}))
    base_url = await server.start_tcp()
    loop = asyncio.get_running_loop()
    async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
        started = loop.time()
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        arrivals = [loop.time() - started async for _ in stream]
    assert arrivals[0] >= 0.2
    # Pieces arrive one by one, not in a single burst at the end.
    assert arrivals[-1] - arrivals[0] >= 0.15


async def test_model_routing_auth_and_models_list(scripted: Callable[..., ScriptedLLMServer]) -> None:
    server = scripted(scenarios={"alpha": Scenario(name="a", final="from alpha"),
                                 "beta": Scenario(name="b", final="from beta")}, api_key="sk-real")
    base_url = await server.start_tcp()
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-real", max_retries=0,
                                  _strict_response_validation=True) as client:
        models = await client.models.list()
        assert sorted(m.id for m in models.data) == ["alpha", "beta"]
        for m in models.data:
            assert_no_unknown_fields(m)
        for name in ("alpha", "beta"):
            r = await client.chat.completions.create(model=name, messages=USER)
            assert r.choices[0].message.content == f"from {name}"
        with pytest.raises(openai.NotFoundError, match="`gamma` does not exist"):
            await client.chat.completions.create(model="gamma", messages=USER)
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="alpha", messages=USER)


async def test_bad_requests_get_openai_errors(tools_server: ScriptedLLMServer) -> None:
    base_url = await tools_server.start_tcp()
    headers = {"Authorization": "Bearer sk-test"}
    async with aiohttp.ClientSession() as http:
        for body, fragment in ((b"[]", "JSON object"), (b'{"messages": []}', "model"),
                               (b'{"model": "m"}', "messages"), (b"{", "JSON object")):
            async with http.post(f"{base_url}/chat/completions", data=body, headers=headers) as response:
                assert response.status == 400
                error = (await response.json())["error"]
                assert fragment in error["message"]
                assert error["type"] == "invalid_request_error"


async def test_concurrent_conversations(client: openai.AsyncOpenAI) -> None:
    async def ask(turns: int) -> str:
        r = await client.chat.completions.create(model="m", messages=after_turns(turns))
        calls = r.choices[0].message.tool_calls or []
        return calls[0].id if calls else (r.choices[0].message.content or "")

    results = await asyncio.gather(*(ask(i % 3) for i in range(12)))
    assert results == ["call_0_0", "call_1_0", "All done, the README now says hello."] * 4


async def test_unix_socket(tools_server: ScriptedLLMServer, tmp_path: Path) -> None:
    socket_path = tmp_path / "llm.sock"
    base_url = await tools_server.start_unix(socket_path)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket_path))) as http, \
            http.post(f"{base_url}/chat/completions", headers={"Authorization": "Bearer sk-test"},
                      json={"model": "m", "messages": USER}) as response:
        assert response.status == 200
        body = await response.json()
    assert body["choices"][0]["message"]["tool_calls"][0]["id"] == "call_0_0"
