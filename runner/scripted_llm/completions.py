"""The Chat Completions wire format, as OpenAI sends it: whole responses and streamed chunks.

Pure functions from a scripted answer to JSON-ready dicts, so the server module only deals with HTTP.
Shapes follow the OpenAI API reference: a response is `object: "chat.completion"` with one choice whose
`message` has `role`, `content`, `refusal` and (only when the model calls tools) `tool_calls`; a stream
is a run of `object: "chat.completion.chunk"` sharing one id and `created`, opening with a role delta,
then content pieces, then per tool call a delta with `index`, `id`, `type` and the function name
followed by pieces of the arguments, then an empty delta with the `finish_reason`. With
`stream_options.include_usage`, every chunk carries `"usage": null` and one last chunk with no choices
carries the usage. Token counts are estimated at four characters per token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from runner.scripted_llm.scenario import ScriptedToolCall

CHARS_PER_TOKEN = 4
SYSTEM_FINGERPRINT = "fp_codex_sys_scripted"


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class Answer:
    """One assistant turn to send: the scenario's step (or final message) made concrete."""

    completion_id: str
    created: int
    model: str
    content: str | None
    tool_calls: tuple[tuple[str, ScriptedToolCall], ...]  # (call id, call)
    prompt_tokens: int

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def completion_tokens(self) -> int:
        chars = len(self.content or "") + sum(len(c.name) + len(c.arguments_text) for _, c in self.tool_calls)
        return estimate_tokens(chars)

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def prompt_tokens(body: dict[str, Any]) -> int:
    """Estimate of a request's prompt size: its messages and tool definitions as JSON text."""
    chars = len(json.dumps(body.get("messages", []), ensure_ascii=False))
    if body.get("tools"):
        chars += len(json.dumps(body["tools"], ensure_ascii=False))
    return estimate_tokens(chars)


def assistant_turns(messages: Sequence[Any]) -> int:
    return sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")


def prompt_texts(messages: Sequence[Any]) -> Iterator[str]:
    """Every piece of text in the messages: string contents, text parts and tool-call arguments."""
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"]
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                yield function["arguments"]


def completion(answer: Answer, report_usage: bool = True) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None,
                               "annotations": []}
    if answer.tool_calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_text}}
            for call_id, c in answer.tool_calls
        ]
    out: dict[str, Any] = {
        "id": answer.completion_id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}],
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if report_usage:
        out["usage"] = answer.usage()
    return out


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start:start + size]


def chunks(answer: Answer, chunk_chars: int, include_usage: bool) -> Iterator[dict[str, Any]]:
    """The stream of `chat.completion.chunk` objects for one answer, in wire order."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": answer.completion_id,
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            out["usage"] = None
        return out

    opening: dict[str, Any] = {"role": "assistant", "content": "" if answer.content is not None else None,
                               "refusal": None}
    yield chunk(opening)
    for piece in _pieces(answer.content or "", chunk_chars):
        yield chunk({"content": piece})
    for index, (call_id, call) in enumerate(answer.tool_calls):
        yield chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                     "function": {"name": call.name, "arguments": ""}}]})
        for piece in _pieces(call.arguments_text, chunk_chars):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, answer.finish_reason)
    if include_usage:  # the closing chunk OpenAI sends with stream_options.include_usage: no choices
        yield {**chunk({}), "choices": [], "usage": answer.usage()}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
