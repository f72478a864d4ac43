"""The agent's model client over a real unix socket, against the scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.gateway import GatewayConnection
from agent.llm import GatewayModel, ModelError, ModelRefused, parse_completion
from agent.tools import TOOL_SCHEMAS
from runner.scripted_llm import Scenario, ScriptedLLMServer

pytestmark = pytest.mark.timeout(20)

MESSAGES = [{"role": "system", "content": "sys"}, {"role": "user", "content": "do it"}]


async def _serve(doc: dict[str, Any], socket: Path) -> ScriptedLLMServer:
    server = ScriptedLLMServer(Scenario.from_dict(doc))
    await server.start_unix(socket)
    return server


Models = Callable[[Path], GatewayModel]


@pytest.fixture
def models() -> Iterator[Callable[[Path], GatewayModel]]:
    made: list[GatewayModel] = []

    def make(socket: Path) -> GatewayModel:
        model = GatewayModel(GatewayConnection(str(socket), "tok-SECRET", 10.0), "scripted",
                             retry_delays_s=(0.01, 0.01, 0.01))
        made.append(model)
        return model

    yield make
    for model in made:
        model.close()


async def test_completion_with_tool_calls(short_dir: Path, models: Models) -> None:
    socket = short_dir / "llm.sock"
    server = await _serve({"name": "t", "steps": [
        {"content": "Looking.", "tool_calls": [
            {"name": "run_shell_command", "arguments": {"command_string": "ls"}},
            {"name": "edit_file_content", "raw_arguments": "{broken"}]}]}, socket)
    try:
        turn = await asyncio.to_thread(models(socket).complete, MESSAGES, TOOL_SCHEMAS)
    finally:
        await server.close()
    assert turn.content == "Looking."
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [
        ("run_shell_command", '{"command_string": "ls"}'), ("edit_file_content", "{broken")]
    assert turn.finish_reason == "tool_calls"
    assert turn.as_message()["tool_calls"][1] == {
        "id": turn.tool_calls[1].id, "type": "function",
        "function": {"name": "edit_file_content", "arguments": "{broken"}}
    [request] = server.chat_requests
    assert request.header("authorization") == "Bearer tok-SECRET"
    assert request.body["model"] == "scripted"
    assert request.body["messages"] == MESSAGES
    assert [t["function"]["name"] for t in request.body["tools"]] == [t["function"]["name"] for t in TOOL_SCHEMAS]
    assert not request.body.get("stream")


async def test_keeps_one_connection_alive_across_requests(short_dir: Path, models: Models) -> None:
    socket = short_dir / "llm.sock"
    server = await _serve({"name": "t", "final": "done"}, socket)
    model = models(socket)
    try:
        for _ in range(3):
            turn = await asyncio.to_thread(model.complete, MESSAGES, TOOL_SCHEMAS)
            assert turn.content == "done" and not turn.tool_calls
    finally:
        await server.close()
    assert len(server.chat_requests) == 3


async def test_server_errors_are_retried(short_dir: Path, models: Models) -> None:
    socket = short_dir / "llm.sock"
    server = await _serve({"name": "t", "steps": [
        {"error": {"status": 503, "message": "overloaded", "times": 2}, "content": "finally"}]}, socket)
    try:
        turn = await asyncio.to_thread(models(socket).complete, MESSAGES, TOOL_SCHEMAS)
    finally:
        await server.close()
    assert turn.content == "finally"
    assert [r.status for r in server.chat_requests] == [503, 503, 200]


async def test_persistent_server_errors_give_up(short_dir: Path, models: Models) -> None:
    socket = short_dir / "llm.sock"
    server = await _serve({"name": "t", "steps": [{"error": {"status": 500, "message": "boom"}}]}, socket)
    try:
        with pytest.raises(ModelError, match=r"could not be reached after 4 attempts: HTTP 500: boom"):
            await asyncio.to_thread(models(socket).complete, MESSAGES, TOOL_SCHEMAS)
    finally:
        await server.close()
    assert len(server.chat_requests) == 4


@pytest.mark.parametrize("status", [429, 403, 401])
async def test_refusals_stop_at_once_with_the_message(short_dir: Path, models: Models, status: int) -> None:
    socket = short_dir / "llm.sock"
    server = await _serve({"name": "t", "steps": [
        {"error": {"status": status, "message": "task budget of 2 requests is used up"}}]}, socket)
    try:
        with pytest.raises(ModelRefused, match=r"^task budget of 2 requests is used up$"):
            await asyncio.to_thread(models(socket).complete, MESSAGES, TOOL_SCHEMAS)
    finally:
        await server.close()
    assert len(server.chat_requests) == 1


async def test_rejected_requests_are_not_retried(short_dir: Path, models: Models) -> None:
    socket = short_dir / "llm.sock"
    server = await _serve({"name": "t", "steps": [
        {"error": {"status": 400, "message": "maximum context length exceeded"}}]}, socket)
    try:
        with pytest.raises(ModelError, match="rejected: HTTP 400: maximum context length exceeded"):
            await asyncio.to_thread(models(socket).complete, MESSAGES, TOOL_SCHEMAS)
    finally:
        await server.close()
    assert len(server.chat_requests) == 1


async def test_unreachable_gateway(short_dir: Path, models: Models) -> None:
    with pytest.raises(ModelError, match=r"after 4 attempts: gateway socket .*missing.sock does not exist"):
        await asyncio.to_thread(models(short_dir / "missing.sock").complete, MESSAGES, TOOL_SCHEMAS)


def test_parse_tolerates_missing_ids_and_object_arguments() -> None:
    turn = parse_completion({"choices": [{"message": {"content": None, "tool_calls": [
        {"type": "function", "function": {"name": "list_directory", "arguments": {"path": "src"}}}]},
        "finish_reason": "tool_calls"}]}, step=3)
    assert turn.tool_calls[0].id == "call_3_0"
    assert turn.tool_calls[0].arguments == '{"path": "src"}'
    assert turn.content is None


async def test_a_kept_alive_connection_closed_by_the_server_is_reopened(short_dir: Path) -> None:
    socket = short_dir / "llm.sock"
    doc = {"name": "t", "final": "done"}
    # No retries at all: only the reconnect of a stale kept-alive connection can make the second call work.
    model = GatewayModel(GatewayConnection(str(socket), "tok", 10.0), "scripted", retry_delays_s=())
    try:
        first = await _serve(doc, socket)
        await asyncio.to_thread(model.complete, MESSAGES, TOOL_SCHEMAS)
        await first.close()  # the gateway restarts: the agent's idle connection is gone
        second = await _serve(doc, socket)
        try:
            turn = await asyncio.to_thread(model.complete, MESSAGES, TOOL_SCHEMAS)
        finally:
            await second.close()
    finally:
        model.close()
    assert turn.content == "done"
    assert len(second.chat_requests) == 1
