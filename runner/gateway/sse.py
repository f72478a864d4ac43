"""Reading a streamed Chat Completions response on its way through the gateway.

The gateway passes the provider's bytes to the agent untouched, as they arrive, and feeds the same
bytes here to learn what was said: `SSEDecoder` splits them into server-sent events (the `data:` lines
of each blank-line-terminated event, per the SSE specification, any line ending), and `StreamAssembler`
folds the `chat.completion.chunk` objects back into one assistant message for the transcript: string
fields of the deltas concatenated (`content`, and also `reasoning_content` or `refusal` where providers
send them), tool calls gathered by `index`, plus the finish reason and the usage of the final chunk.
"""

from __future__ import annotations

import json
from typing import Any

from runner.domain.models import TokenUsage
from runner.gateway import usage as usage_mod

DONE = "[DONE]"


class SSEDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[str]:
        """The data of every event completed by these bytes."""
        self._buffer += data
        events: list[str] = []
        while True:
            cut = min((i for i in (self._buffer.find(b"\n"), self._buffer.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                return events
            # A lone "\r" at the end of the buffer may be the first half of "\r\n": wait for more.
            if self._buffer[cut:cut + 1] == b"\r" and cut + 1 == len(self._buffer):
                return events
            line = self._buffer[:cut].decode("utf-8", "replace")
            skip = 2 if self._buffer[cut:cut + 2] == b"\r\n" else 1
            self._buffer = self._buffer[cut + skip:]
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
            # Comments (":...") and other fields (event:, id:, retry:) carry nothing we need.

    def finish(self) -> list[str]:
        """Events left when the stream ends without a final blank line."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        self._buffer = b""
        return events


class StreamAssembler:
    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: TokenUsage | None = None
        self.error: str | None = None
        self.done = False
        self.chunks = 0
        self.undecodable = 0

    def feed(self, data: str) -> None:
        if data == DONE:
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            self.undecodable += 1
            return
        if not isinstance(chunk, dict):
            self.undecodable += 1
            return
        self.chunks += 1
        if "error" in chunk:  # some providers report a failure inside the stream
            self.error = json.dumps(chunk["error"], ensure_ascii=False)
        reported = usage_mod.reported(chunk.get("usage"))
        if reported is not None:
            self.usage = reported
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta)

    def _delta(self, delta: dict[str, Any]) -> None:
        for key, value in delta.items():
            if key != "role" and isinstance(value, str):
                self.fields[key] = self.fields.get(key, "") + value
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict) or not isinstance(call.get("index"), int):
                continue
            entry = self.tool_calls.setdefault(call["index"], {"id": "", "type": "function",
                                                               "function": {"name": "", "arguments": ""}})
            if isinstance(call.get("id"), str):
                entry["id"] += call["id"]
            if isinstance(call.get("type"), str):
                entry["type"] = call["type"]
            function = call.get("function")
            if isinstance(function, dict):
                for key in ("name", "arguments"):
                    if isinstance(function.get(key), str):
                        entry["function"][key] += function[key]

    def message(self) -> dict[str, Any]:
        """The assistant message the stream carried, shaped like a non-streamed one."""
        message: dict[str, Any] = {"role": "assistant", "content": self.fields.get("content")}
        for key, value in self.fields.items():
            if key != "content":
                message[key] = value
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return message
