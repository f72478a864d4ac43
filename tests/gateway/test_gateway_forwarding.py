"""Forwarding to the provider: the key stays in the runner, answers pass through, failures are clear."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam
from strict_openai import assert_no_unknown_fields

from runner.gateway import Budget, Gateway, GatewayOptions
from runner.gateway.provider import Provider, public_url
from runner.scripted_llm import Scenario, ScriptedLLMServer

pytestmark = pytest.mark.timeout(30)

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "Write HELLO.md."}]

Agent = Callable[[Gateway, str], openai.AsyncOpenAI]
Raw = Callable[[Gateway], aiohttp.ClientSession]


async def test_provider_key_goes_out_agent_token_does_not(
        gateway: Gateway, provider: ScriptedLLMServer, agent: Agent, provider_key: str) -> None:
    token = gateway.open_session("task-1", "alice", Budget())
    client = agent(gateway, token)
    response = await client.chat.completions.with_raw_response.create(model="gpt-x", messages=MESSAGES)
    completion = response.parse()
    assert completion.choices[0].message.content == "Let me look."
    for name, value in response.headers.items():
        assert provider_key not in value, name
    assert provider_key not in response.http_response.text
    forwarded = provider.chat_requests[-1]
    assert forwarded.header("authorization") == f"Bearer {provider_key}"
    for name, value in forwarded.headers.items():
        assert token not in value, name
    assert forwarded.body["model"] == "gpt-x"
    assert forwarded.body["messages"] == MESSAGES
    report = await gateway.close_session("task-1")
    assert provider_key.encode() not in report.transcript
    assert token.encode() not in report.transcript


async def _post(http: aiohttp.ClientSession, token: str, body: Any) -> tuple[int, Any]:
    async with http.post("http://localhost/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {token}"}) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def test_non_streaming_answer_and_usage(gateway: Gateway, provider: ScriptedLLMServer, agent: Agent,
                                              sink: Any) -> None:
    token = gateway.open_session("task-1", "alice", Budget())
    client = agent(gateway, token)
    completion = await client.chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert_no_unknown_fields(completion)
    call = (completion.choices[0].message.tool_calls or [])[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id == "call_0_0"
    assert json.loads(call.function.arguments) == {"command_string": "ls -la"}
    assert completion.usage is not None
    assert len(sink.usage) == 1
    task_id, usage, total = sink.usage[0]
    assert task_id == "task-1"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (
        completion.usage.prompt_tokens, completion.usage.completion_tokens, 1)
    assert total == usage
    again = await client.chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert again.usage is not None
    assert sink.usage[1][2].total_tokens == completion.usage.total_tokens + again.usage.total_tokens
    assert sink.usage[1][2].requests == 2
    report = await gateway.close_session("task-1")
    assert report.usage == sink.usage[1][2]
    assert report.budget_exceeded is None


async def test_empty_model_becomes_the_configured_one(gateway: Gateway, provider: ScriptedLLMServer,
                                                      raw: Raw) -> None:
    token = gateway.open_session("task-1", "alice", Budget())
    status, body = await _post(raw(gateway), token, {"model": "", "messages": MESSAGES})
    assert status == 200
    assert provider.chat_requests[-1].body["model"] == "house-model"
    assert body["model"] == "house-model"
    status, _ = await _post(raw(gateway), token, {"messages": MESSAGES})
    assert status == 200
    assert provider.chat_requests[-1].body["model"] == "house-model"


async def test_models_lists_the_configured_model(gateway: Gateway, agent: Agent) -> None:
    token = gateway.open_session("task-1", "alice", Budget())
    models = await agent(gateway, token).models.list()
    assert [m.id for m in models.data] == ["house-model"]


async def test_streaming_passes_through_as_it_arrives(make_gateway: Callable[..., Any], agent: Agent,
                                                      sink: Any, provider_key: str) -> None:
    slow = ScriptedLLMServer(Scenario.from_dict({"name": "slow", "stream_chunk_chars": 6, "steps": [
        {"content": "one two three four", "chunk_delay_s": 0.1,
         "tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "make test"}}]}]}),
        api_key=provider_key)
    try:
        gateway = await make_gateway(await slow.start_tcp())
        token = gateway.open_session("task-1", "alice", Budget())
        client = agent(gateway, token)
        loop = asyncio.get_running_loop()
        started = loop.time()
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        arrivals: list[float] = []
        chunks = []
        async for chunk in stream:
            arrivals.append(loop.time() - started)
            chunks.append(chunk)
        # The provider takes ~0.1 s per chunk; a gateway that buffered would deliver all at once at the end.
        assert arrivals[-1] - arrivals[0] > 0.5
        for chunk in chunks:
            assert_no_unknown_fields(chunk)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four"
        arguments = "".join(d.function.arguments or "" for c in chunks if c.choices
                            for d in c.choices[0].delta.tool_calls or [] if d.function)
        assert json.loads(arguments) == {"command_string": "make test"}
        # The agent did not ask for usage; the gateway did, so the usage chunk comes and is counted.
        forwarded = slow.chat_requests[-1].body
        assert forwarded["stream_options"] == {"include_usage": True}
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert sink.usage[-1][1].total_tokens == chunks[-1].usage.total_tokens
        report = await gateway.close_session("task-1")
        assert report.usage.total_tokens == chunks[-1].usage.total_tokens
    finally:
        await slow.close()


async def test_streaming_helper_through_the_gateway(gateway: Gateway, agent: Agent) -> None:
    token = gateway.open_session("task-1", "alice", Budget())
    async with agent(gateway, token).chat.completions.stream(model="m", messages=MESSAGES) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)] == [
        "run_shell_command"]


async def test_provider_client_errors_pass_through(make_gateway: Callable[..., Any], agent: Agent,
                                                   provider_key: str) -> None:
    strict = ScriptedLLMServer(Scenario.from_dict({"name": "strict", "steps": [
        {"content": "ok", "expect_in_prompt": ["AGENTS.md says: run make"]}]}), api_key=provider_key)
    try:
        gateway = await make_gateway(await strict.start_tcp())
        token = gateway.open_session("task-1", "alice", Budget())
        with pytest.raises(openai.BadRequestError) as info:
            await agent(gateway, token).chat.completions.create(model="m", messages=MESSAGES)
        assert info.value.status_code == 400
        assert "'AGENTS.md says: run make'" in info.value.message
    finally:
        await strict.close()


async def test_provider_5xx_becomes_502(make_gateway: Callable[..., Any], agent: Agent, sink: Any,
                                        provider_key: str) -> None:
    broken = ScriptedLLMServer(Scenario.from_dict({"name": "broken", "steps": [
        {"error": {"status": 500, "message": "the model fell over"}}]}), api_key=provider_key)
    try:
        base_url = await broken.start_tcp()
        gateway = await make_gateway(base_url)
        token = gateway.open_session("task-1", "alice", Budget())
        with pytest.raises(openai.APIStatusError) as info:
            await agent(gateway, token).chat.completions.create(model="m", messages=MESSAGES)
        assert info.value.status_code == 502
        assert f"{base_url}/chat/completions" in info.value.message
        assert "the model fell over" in info.value.message
        assert sink.usage == []
    finally:
        await broken.close()


async def test_wrong_provider_key_is_a_502_that_does_not_show_it(
        make_gateway: Callable[..., Any], provider: ScriptedLLMServer, agent: Agent) -> None:
    gateway = await make_gateway(await provider.start_tcp(), api_key="sk-wrong-key-abcdef")
    token = gateway.open_session("task-1", "alice", Budget())
    with pytest.raises(openai.APIStatusError) as info:
        await agent(gateway, token).chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.status_code == 502
    assert "refused the runner's API key" in info.value.message
    assert "sk-wrong-key-abcdef" not in info.value.message


async def test_provider_down_is_a_502_naming_the_url_not_the_key(
        make_gateway: Callable[..., Any], agent: Agent, raw: Raw, provider_key: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gateway = await make_gateway(f"http://127.0.0.1:{port}/v1")
    token = gateway.open_session("task-1", "alice", Budget())
    status, body = await _post(raw(gateway), token, {"model": "m", "messages": MESSAGES})
    assert status == 502
    message = body["error"]["message"]
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in message
    assert "unreachable" in message
    assert provider_key not in message
    with pytest.raises(openai.APIStatusError) as info:
        await agent(gateway, token).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert info.value.status_code == 502
    report = await gateway.close_session("task-1")
    assert provider_key.encode() not in report.transcript
    assert b"unreachable" in report.transcript


async def test_bad_requests_are_refused_before_the_provider(gateway: Gateway, provider: ScriptedLLMServer,
                                                            raw: Raw) -> None:
    token = gateway.open_session("task-1", "alice", Budget())
    http = raw(gateway)
    for data, fragment in ((b"{", "not JSON"), (b"[]", "JSON object"), (b'{"model": "m"}', "messages"),
                           (b'{"model": 3, "messages": [{"role": "user", "content": "x"}]}', "'model'")):
        async with http.post("http://localhost/v1/chat/completions", data=data,
                             headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 400
            assert fragment in (await response.json())["error"]["message"]
    assert provider.chat_requests == []


async def test_body_size_limit(make_gateway: Callable[..., Any], provider: ScriptedLLMServer, raw: Raw) -> None:
    gateway = await make_gateway(await provider.start_tcp(), options=GatewayOptions(max_body_bytes=10_000))
    token = gateway.open_session("task-1", "alice", Budget())
    status, body = await _post(raw(gateway), token, {"model": "m", "messages": [
        {"role": "user", "content": "x" * 20_000}]})
    assert status == 413
    assert "10000 bytes" in body["error"]["message"]
    assert provider.chat_requests == []


async def test_a_failing_usage_sink_does_not_cost_the_answer(gateway: Gateway, agent: Agent, sink: Any) -> None:
    sink.fail_usage = True
    token = gateway.open_session("task-1", "alice", Budget())
    completion = await agent(gateway, token).chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "tool_calls"
    report = await gateway.close_session("task-1")
    assert report.usage.requests == 1


async def test_concurrent_tasks_are_accounted_apart(gateway: Gateway, agent: Agent) -> None:
    tokens = {f"task-{i}": gateway.open_session(f"task-{i}", "alice", Budget()) for i in range(4)}

    async def run(task_id: str, n: int) -> None:
        client = agent(gateway, tokens[task_id])
        for _ in range(n):
            await client.chat.completions.create(model="m", messages=MESSAGES, stream=n % 2 == 0)

    await asyncio.gather(*(run(task_id, i + 1) for i, task_id in enumerate(tokens)))
    for i, task_id in enumerate(tokens):
        report = await gateway.close_session(task_id)
        assert report.usage.requests == i + 1
        assert report.transcript.count(b"=== response ") == i + 1


def test_provider_urls_are_shown_without_credentials() -> None:
    assert public_url("https://user:secret@llm.example:8443/v1?x=1") == "https://llm.example:8443/v1?x=1"
    assert Provider("http://u:p@[::1]:8000/v1", None).public_chat_url == "http://[::1]:8000/v1/chat/completions"
    with pytest.raises(ValueError, match="credentials as well as an API key"):
        Provider("http://u:p@host/v1", "sk-x")
    with pytest.raises(ValueError, match="not an http"):
        Provider("ftp://host/v1", None)


async def test_a_provider_echoing_the_key_does_not_leak_it(make_gateway: Callable[..., Any], raw: Raw,
                                                           provider_key: str) -> None:
    echo = ScriptedLLMServer(Scenario.from_dict({"name": "echo", "steps": [
        {"error": {"status": 400, "message": f"key {provider_key} may not use this model"}}]}),
        api_key=provider_key)
    try:
        gateway = await make_gateway(await echo.start_tcp())
        token = gateway.open_session("task-1", "alice", Budget())
        status, body = await _post(raw(gateway), token, {"model": "m", "messages": MESSAGES})
        assert status == 400
        assert body["error"]["message"] == "key [redacted] may not use this model"
        report = await gateway.close_session("task-1")
        assert provider_key.encode() not in report.transcript
        assert b"key [redacted] may not use this model" in report.transcript
    finally:
        await echo.close()


async def test_gateway_over_tcp(gateway: Gateway) -> None:
    port = await gateway.listen_tcp("127.0.0.1", 0)
    token = gateway.open_session("task-1", "alice", Budget())
    async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=0) as client:
        completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "tool_calls"
