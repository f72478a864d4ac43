"""Reading streams on the side: SSE framing and reassembly of the streamed message."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from runner.gateway import Budget, Gateway
from runner.gateway.sse import SSEDecoder, StreamAssembler
from runner.scripted_llm import Scenario, ScriptedLLMServer

pytestmark = pytest.mark.timeout(20)


def _events(raw: bytes, cut: int) -> list[str]:
    decoder = SSEDecoder()
    out: list[str] = []
    for start in range(0, len(raw), cut):
        out += decoder.feed(raw[start:start + cut])
    return out + decoder.finish()


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_decoder_framing_whatever_the_cuts(cut: int, newline: bytes) -> None:
    raw = newline.join([
        b": keep-alive comment", b"", b"data: {\"a\": 1}", b"", b"event: message", b"id: 7",
        b"data: first line", b"data:second line", b"", b"data: [DONE]", b"", b"data: no final blank line"])
    assert _events(raw, cut) == ['{"a": 1}', "first line\nsecond line", "[DONE]", "no final blank line"]


def test_assembler_rebuilds_content_and_tool_calls() -> None:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm "}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}},
    ]
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.feed(json.dumps(chunk))
    assembler.feed("not json")
    assembler.feed("[DONE]")
    assert assembler.done and assembler.undecodable == 1
    assert assembler.finish_reason == "tool_calls"
    assert assembler.usage is not None and assembler.usage.total_tokens == 10
    assert assembler.message() == {
        "role": "assistant", "content": "Hello", "reasoning_content": "hmm ",
        "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                       {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}]}


async def test_a_provider_without_usage_is_estimated(make_gateway: Callable[..., Any], sink: Any,
                                                     raw: Callable[[Gateway], aiohttp.ClientSession],
                                                     provider_key: str) -> None:
    quiet = ScriptedLLMServer(Scenario.from_dict({"name": "quiet", "report_usage": False, "final": "x" * 400}),
                              api_key=provider_key)
    try:
        gateway = await make_gateway(await quiet.start_tcp())
        token = gateway.open_session("task-1", "alice", Budget())
        for stream in (False, True):
            async with raw(gateway).post("http://localhost/v1/chat/completions", json={
                    "model": "m", "stream": stream, "messages": [{"role": "user", "content": "y" * 400}]},
                    headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200
                await response.read()
        for _, usage, _ in sink.usage:
            assert usage.prompt_tokens >= 100 and usage.completion_tokens >= 100
        report = await gateway.close_session("task-1")
        assert report.transcript.count(b"(estimated)") == 2
        assert report.usage.requests == 2
    finally:
        await quiet.close()
