"""The LLM transcript of one task (`llm_response.txt`), written by the gateway, never by the agent.

Every request the agent sends through the gateway, as forwarded to the provider, and every answer,
as the agent received it (a streamed answer is assembled into one message), are appended to a file
under the gateway's transcripts folder while the task's session is open; closing the session returns
the bytes and deletes the file. The format is plain UTF-8 text meant to be read by a person, and it is
unambiguous: lines the gateway writes start in column 0, and text that came from the model or the
agent (message contents, tool-call arguments, error bodies) is always indented by two spaces, so no
message can pass itself off as structure.

    codex-sys LLM transcript (format 1)
    task: 7f3c…  tenant: alice
    opened: 2026-11-21T06:50:01.123Z

    === request 1 at 2026-11-21T06:50:01.200Z
    params: {"model": "gpt-4.1", "stream": true, "stream_options": {"include_usage": true}}
    tools: [{"type": "function", "function": {"name": "run_shell_command", ...}}]
    --- message 0: system
      You are a coding agent...
    --- message 1: user
      Make the README say hello.

    === response 1 at 2026-11-21T06:50:01.612Z: 200 in 0.412 s, streamed, finish tool_calls
    usage: 120 prompt + 30 completion = 150 tokens; task total 150 tokens in 1 request(s)
    --- assistant
      Let me look first.
    tool_call call_0_0 run_shell_command
      {"command_string": "ls -la"}

    === request 2 at 2026-11-21T06:50:02.001Z
    params: {"model": "gpt-4.1", "stream": true, "stream_options": {"include_usage": true}}
    tools: as in request 1
    --- messages 0-1: as in request 1
    --- message 2: assistant
    tool_call call_0_0 run_shell_command
      {"command_string": "ls -la"}
    --- message 3: tool call_0_0
      README.md

    === response 2 at ...: 429 in 0.000 s, refused by the gateway
    error:
      request budget exhausted: 10 of 10 LLM requests used

A request block holds every field of the forwarded request: `params` (everything but the messages and
tools, as JSON), `tools` (JSON), then each message: its role (and `tool_call_id`), its text content, its
tool calls (id, function name, then the arguments exactly as sent), and any other field as a `fields:`
JSON line. The conversation only grows between requests, so a run of leading messages equal to the
previous request's (and tools equal to its tools) is written as a reference to that request instead of
being repeated: nothing is lost, and a 50-step task does not write its first messages 50 times.

A response block gives the HTTP status the agent saw, the time from request to end of response,
whether it streamed, the finish reason, the usage (marked `(estimated)` when the provider gave none)
with the task's running total, and the assistant message, or `error:` with the error text. Requests
the gateway refused (budget, rate) appear with status 429 and the reason; a request cut short by the
end of the session or of the wall-time budget says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.domain.models import TokenUsage

FORMAT_VERSION = 1
INDENT = "  "


def timestamp(wall_time: float) -> str:
    return datetime.fromtimestamp(wall_time, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _text(text: str) -> list[str]:
    return [INDENT + line for line in text.split("\n")]


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    seq: int
    wall_time: float
    status: int
    duration_s: float
    streamed: bool
    message: Mapping[str, Any] | None = None
    finish_reason: str | None = None
    usage: TokenUsage | None = None
    usage_estimated: bool = False
    total: TokenUsage | None = None
    error: str | None = None
    note: str | None = None  # "refused by the gateway", "cut short: ..."


def render_header(task_id: str, tenant: str, opened_at: float) -> str:
    return (f"codex-sys LLM transcript (format {FORMAT_VERSION})\n"
            f"task: {task_id}  tenant: {tenant}\n"
            f"opened: {timestamp(opened_at)}\n")


def _tool_calls(calls: Any) -> list[str]:
    lines: list[str] = []
    for call in calls if isinstance(calls, list) else [calls]:
        if not isinstance(call, dict):
            lines.append(f"tool_call (malformed) {_json(call)}")
            continue
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        name = function.get("name")
        lines.append(f"tool_call {call.get('id', '')} {name if isinstance(name, str) else _json(name)}")
        extra = {k: v for k, v in call.items() if k not in ("id", "type", "function", "index")}
        extra |= {k: v for k, v in function.items() if k not in ("name", "arguments")}
        if call.get("type", "function") != "function":
            extra["type"] = call.get("type")
        if extra:
            lines.append(f"fields: {_json(extra)}")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            lines += _text(arguments)
        elif arguments is not None:
            lines.append(f"arguments: {_json(arguments)}")
    return lines


def render_message_body(message: Mapping[str, Any]) -> list[str]:
    """The lines under a message's header: content, other text fields, tool calls, remaining fields."""
    lines: list[str] = []
    content = message.get("content")
    if isinstance(content, str):
        if content:
            lines += _text(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                lines += _text(part["text"])
            else:
                lines.append(f"part: {_json(part)}")
    elif content is not None:
        lines.append(f"content: {_json(content)}")
    known = {"role", "content", "tool_calls", "tool_call_id"}
    others: dict[str, Any] = {}
    for key, value in message.items():
        if key in known or value is None or value in ([], {}):
            continue
        if isinstance(value, str) and key != "name":
            lines.append(f"{key}:")
            lines += _text(value)
        else:
            others[key] = value
    if message.get("tool_calls"):
        lines += _tool_calls(message["tool_calls"])
    if others:
        lines.append(f"fields: {_json(others)}")
    return lines


def _message_header(index: int, message: Any) -> str:
    if not isinstance(message, dict):
        return f"--- message {index}: (not an object) {_json(message)}"
    role = message.get("role")
    header = f"--- message {index}: {role if isinstance(role, str) else _json(role)}"
    if isinstance(message.get("tool_call_id"), str):
        header += f" {message['tool_call_id']}"
    return header


def render_request(seq: int, wall_time: float, body: Mapping[str, Any],
                   previous: tuple[int, Mapping[str, Any]] | None = None) -> str:
    """A request block; `previous` is (seq, body) of the request written before it, for references."""
    lines = [f"=== request {seq} at {timestamp(wall_time)}"]
    params = {k: v for k, v in body.items() if k not in ("messages", "tools")}
    lines.append(f"params: {_json(params)}")
    tools = body.get("tools")
    prev_seq, prev_body = previous if previous is not None else (0, {})
    if tools is None:
        lines.append("tools: none")
    elif previous is not None and prev_body.get("tools") == tools:
        lines.append(f"tools: as in request {prev_seq}")
    else:
        lines.append(f"tools: {_json(tools)}")
    messages = body.get("messages")
    if not isinstance(messages, list):
        lines.append(f"messages: {_json(messages)}")
        return "\n".join(lines) + "\n"
    same = _common_prefix(messages, prev_body.get("messages")) if previous is not None else 0
    if same:
        lines.append(f"--- messages 0-{same - 1}: as in request {prev_seq}" if same > 1
                     else f"--- message 0: as in request {prev_seq}")
    for index in range(same, len(messages)):
        message = messages[index]
        lines.append(_message_header(index, message))
        if isinstance(message, dict):
            lines += render_message_body(message)
    return "\n".join(lines) + "\n"


def _common_prefix(messages: Sequence[Any], previous: Any) -> int:
    if not isinstance(previous, list):
        return 0
    count = 0
    for a, b in zip(messages, previous, strict=False):
        if a != b:
            break
        count += 1
    return count


def _usage_line(r: ResponseRecord) -> str | None:
    if r.usage is None:
        return None
    u = r.usage
    line = (f"usage: {u.prompt_tokens} prompt + {u.completion_tokens} completion = {u.total_tokens} tokens"
            + (" (estimated)" if r.usage_estimated else ""))
    if r.total is not None:
        line += f"; task total {r.total.total_tokens} tokens in {r.total.requests} request(s)"
    return line


def render_response(r: ResponseRecord) -> str:
    head = f"=== response {r.seq} at {timestamp(r.wall_time)}: {r.status} in {r.duration_s:.3f} s"
    head += ", streamed" if r.streamed else ""
    if r.finish_reason:
        head += f", finish {r.finish_reason}"
    if r.note:
        head += f", {r.note}"
    lines = [head]
    usage_line = _usage_line(r)
    if usage_line:
        lines.append(usage_line)
    if r.message is not None:
        lines.append("--- assistant")
        lines += render_message_body({k: v for k, v in r.message.items() if k != "role"})
    if r.error is not None:
        lines.append("error:")
        lines += _text(r.error)
    return "\n".join(lines) + "\n"


class Transcript:
    """The transcript file of one session. Appends are serialised and done off the event loop."""

    def __init__(self, path: Path, task_id: str, tenant: str) -> None:
        self.path = path
        self._task_id = task_id
        self._tenant = tenant
        self._opened_at = time.time()
        self._lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self._previous: tuple[int, Mapping[str, Any]] | None = None

    async def request(self, seq: int, wall_time: float, body: Mapping[str, Any]) -> None:
        async with self._lock:
            text = render_request(seq, wall_time, body, self._previous)
            self._previous = (seq, body)
            await self._append([text])

    async def response(self, record: ResponseRecord) -> None:
        async with self._lock:
            await self._append([render_response(record)])

    async def _append(self, blocks: Iterable[str]) -> None:
        if self._closed:
            return
        data = "\n".join(blocks) + "\n"
        if not self._started:
            data = render_header(self._task_id, self._tenant, self._opened_at) + "\n" + data
        first, self._started = not self._started, True
        await asyncio.to_thread(_append_file, self.path, data.encode("utf-8", "backslashreplace"), first)

    async def finish(self) -> bytes:
        """The whole transcript; the file is deleted. Later appends are dropped."""
        async with self._lock:
            self._closed = True
            if not self._started:
                return render_header(self._task_id, self._tenant, self._opened_at).encode()
            return await asyncio.to_thread(_read_and_remove, self.path)

    async def discard(self) -> None:
        async with self._lock:
            self._closed = True
            if self._started:
                await asyncio.to_thread(self.path.unlink, missing_ok=True)


def _append_file(path: Path, data: bytes, truncate: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _read_and_remove(path: Path) -> bytes:
    data = path.read_bytes()
    path.unlink()
    return data
