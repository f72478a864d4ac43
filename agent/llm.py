"""The model, as the agent sees it: OpenAI Chat Completions with tools, through the gateway.

Requests are non-streaming: the loop needs whole tool calls before it can act, and the gateway (not the
agent) writes the transcript and reports token usage. The response is decoded into an `AssistantTurn`
that keeps each tool call's arguments as the raw string the model produced, so a malformed call can be
answered with an error message instead of failing here.

Errors are sorted by what the loop should do about them:

- `ModelRefused`: HTTP 401/403, or 429 without a hint to retry — the task's budget is spent or its
  token is no longer valid. Asking again cannot help; the loop stops and reports the gateway's message.
- A 429 that is a *rate* limit (error type `rate_limit_exceeded`, or `Retry-After` without
  `x-should-retry: false`) is not an error: the client waits as told and asks again, up to
  `MAX_RATE_LIMIT_WAIT_S` in total for one request.
- `ModelError`: any other answer that is not a completion (400 context too long, 404 unknown model),
  or the gateway stayed unreachable / kept failing with 5xx after a few retries with backoff.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.gateway import GatewayConnection, GatewayUnreachable, Reply
from agent.wire import CHAT_PATH

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
MAX_RATE_LIMIT_WAIT_S = 300.0
_REFUSED = (401, 403, 429)
_RETRYABLE = (408, 409, 425)
_RATE_LIMITED = "rate_limit_exceeded"


class ModelRefused(Exception):
    """The gateway refused the request for good (budget exhausted, token expired)."""


class ModelError(Exception):
    """The model could not be asked (unreachable, persistent server errors, a request it rejects)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the raw JSON text the model produced, possibly malformed


@dataclass(frozen=True, slots=True)
class AssistantTurn:
    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None = None

    def as_message(self) -> dict[str, Any]:
        """The turn as it goes back into the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message


class Model(Protocol):
    """What the loop needs from a model."""

    def complete(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> AssistantTurn: ...


class BadCompletion(ValueError):
    """A 200 answer that is not a chat completion."""


def parse_completion(obj: Any, step: int) -> AssistantTurn:
    """Decode a Chat Completions response body; raises `BadCompletion` when it has no usable choice."""
    if not isinstance(obj, dict):
        raise BadCompletion("response is not a JSON object")
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadCompletion("response has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise BadCompletion("response choice has no message")
    content = message.get("content")
    if not isinstance(content, str):
        content = None
    calls: list[ToolCall] = []
    for i, raw in enumerate(message.get("tool_calls") or ()):
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(function, dict):
            raise BadCompletion(f"tool call {i} has no function")
        call_id = raw.get("id")
        if not isinstance(call_id, str) or not call_id:
            # Some OpenAI-compatible servers omit ids; the conversation still needs them to pair results.
            call_id = f"call_{step}_{i}"
        name = function.get("name")
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            # Lenient servers send an object; keep the canonical string form.
            arguments = json.dumps(arguments)
        calls.append(ToolCall(call_id, name if isinstance(name, str) else "",
                              arguments if isinstance(arguments, str) else ""))
    finish = choices[0].get("finish_reason")
    return AssistantTurn(content, tuple(calls), finish if isinstance(finish, str) else None)


class GatewayModel:
    """`Model` over the gateway's `/v1/chat/completions`."""

    def __init__(self, connection: GatewayConnection, model: str, *,
                 retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._connection = connection
        self._model = model
        self._retry_delays_s = tuple(retry_delays_s)
        self._sleep = sleep
        self.requests = 0

    def complete(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> AssistantTurn:
        payload = {"model": self._model, "messages": list(messages), "tools": list(tools), "tool_choice": "auto"}
        self.requests += 1
        problem = ""
        attempt = 0
        rate_waited = 0.0
        while True:
            started = time.monotonic()
            try:
                reply = self._connection.post_json(CHAT_PATH, payload)
            except GatewayUnreachable as exc:
                problem = str(exc)
            else:
                if reply.status == 200:
                    try:
                        turn = parse_completion(reply.json(), self.requests)
                    except (ValueError, BadCompletion) as exc:
                        problem = f"unusable completion: {exc}"
                    else:
                        log.info("model answered in %.2f s: %d tool call(s)%s", time.monotonic() - started,
                                 len(turn.tool_calls),
                                 f", finish_reason={turn.finish_reason}" if turn.finish_reason else "")
                        return turn
                else:
                    wait = rate_limit_wait(reply)
                    if wait is not None:
                        if rate_waited + wait > MAX_RATE_LIMIT_WAIT_S:
                            raise ModelError(f"rate limited for over {MAX_RATE_LIMIT_WAIT_S:g} s: "
                                             f"{reply.error_message()}")
                        log.info("rate limited by the gateway; asking again in %.2f s", wait)
                        rate_waited += wait
                        self._sleep(wait)
                        continue
                    if reply.status in _REFUSED:
                        raise ModelRefused(reply.error_message())
                    problem = _status_problem(reply)
                    if reply.status < 500 and reply.status not in _RETRYABLE:
                        raise ModelError(f"the model request was rejected: {problem}")
            if attempt >= len(self._retry_delays_s):
                raise ModelError(f"the model could not be reached after {attempt + 1} attempts: {problem}")
            delay = self._retry_delays_s[attempt]
            attempt += 1
            log.warning("model request failed (%s); retrying in %.1f s", problem, delay)
            self._sleep(delay)


    def close(self) -> None:
        self._connection.close()


def rate_limit_wait(reply: Reply) -> float | None:
    """Seconds to wait before asking again when `reply` is a rate limit, None when it is not one."""
    if reply.status != 429 or reply.header("x-should-retry") == "false":
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = reply.header(name)
        if value is not None:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue  # an HTTP date; fall back to the error type
            if seconds >= 0:
                return min(seconds, MAX_RATE_LIMIT_WAIT_S)
    return 1.0 if reply.error_type() == _RATE_LIMITED else None


def _status_problem(reply: Reply) -> str:
    message = reply.error_message()
    return message if message.startswith("HTTP ") else f"HTTP {reply.status}: {message}"
