"""The agent loop: ask the model, run the tools it calls, repeat until it answers without a tool call.

In the manner of mini-swe-agent, the loop depends on two small interfaces (a `Model` that completes a
conversation, a `Tools` that executes one call) and ends by exception: `Submitted` when the model gives
its final answer, `StepBudgetExhausted` when `max_steps` model responses have been used, `Stopped` when
the model can no longer be asked (budget spent at the gateway, token refused, gateway unreachable).
`run` turns each into an `Outcome`; the caller writes the outputs whatever the outcome.

A step is one model response. The tools a response asks for are all run (in order) before the next
request, and each result goes back as a `tool` message paired with its call id. Malformed calls are the
tools' business: they come back as error messages, never as exceptions here.

Before the first tool runs, the loop waits for `ready` (the workspace baseline being recorded), so the
first model request can be in flight while the baseline is taken without a tool ever changing the
workspace before it is recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agent.events import EventSink
from agent.llm import AssistantTurn, Model, ModelError, ModelRefused
from agent.tools import ToolResult, describe_call
from agent.wire import AssistantMessageEvent, ToolCallFinishedEvent, ToolCallStartedEvent

log = logging.getLogger(__name__)

EVENT_OUTPUT_CHARS = 4000
# Past this many characters of conversation (~100k tokens), the oldest tool outputs are elided so a long
# task does not die on the model's context limit; the model can always run the tool again.
MAX_CONVERSATION_CHARS = 400_000
KEEP_RECENT_TOOL_OUTPUTS = 6
ELIDED = "[output elided to keep the conversation short; run the tool again if you need it]"


class Tools(Protocol):
    @property
    def schemas(self) -> Sequence[dict[str, Any]]: ...

    def execute(self, name: str, raw_arguments: str) -> ToolResult: ...


class LoopExit(Exception):
    """Ends the loop."""


class Submitted(LoopExit):
    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


class StepBudgetExhausted(LoopExit):
    pass


class Stopped(LoopExit):
    """The model cannot be asked any more; the message says why."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Literal["completed", "failed"]
    reason: str
    summary: str
    steps: int


class AgentLoop:
    def __init__(self, model: Model, tools: Tools, events: EventSink, *, system_prompt: str,
                 instruction: str, max_steps: int, ready: Callable[[], object] = lambda: None) -> None:
        self._model = model
        self._tools = tools
        self._events = events
        self._max_steps = max_steps
        self._ready = ready
        self._ready_done = False
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": instruction},
        ]
        self.steps = 0
        self.last_text = ""

    def run(self) -> Outcome:
        try:
            while True:
                self.step()
        except Submitted as done:
            return Outcome("completed", "", done.summary, self.steps)
        except StepBudgetExhausted:
            reason = f"step budget of {self._max_steps} steps exhausted"
        except Stopped as exc:
            reason = str(exc)
        log.warning("agent loop stopped: %s", reason)
        return Outcome("failed", reason, self._failure_summary(reason), self.steps)

    def step(self) -> None:
        if self.steps >= self._max_steps:
            raise StepBudgetExhausted
        turn = self._ask()
        self.steps += 1
        self.messages.append(turn.as_message())
        text = (turn.content or "").strip()
        if text:
            self.last_text = text
            self._events.emit(AssistantMessageEvent(text))
        if not turn.tool_calls:
            raise Submitted(text)
        self._wait_ready()
        for call in turn.tool_calls:
            result = self._run_tool(call.id, call.name, call.arguments)
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": result.output})

    def _ask(self) -> AssistantTurn:
        elided = elide_old_tool_outputs(self.messages, MAX_CONVERSATION_CHARS, KEEP_RECENT_TOOL_OUTPUTS)
        if elided:
            log.info("elided %d old tool output(s) to keep the conversation under %d characters", elided,
                     MAX_CONVERSATION_CHARS)
        try:
            return self._model.complete(self.messages, self._tools.schemas)
        except ModelRefused as exc:
            raise Stopped(f"the gateway refused the model request: {exc}") from exc
        except ModelError as exc:
            raise Stopped(str(exc)) from exc

    def _wait_ready(self) -> None:
        if not self._ready_done:
            self._ready()
            self._ready_done = True

    def _run_tool(self, call_id: str, name: str, arguments: str) -> ToolResult:
        summary = describe_call(name, arguments)
        self._events.emit(ToolCallStartedEvent(call_id, name or "(no name)", summary))
        started = time.monotonic()
        try:
            result = self._tools.execute(name, arguments)
        except Exception as exc:
            # A bug in one tool should cost the model one call, not the whole task.
            log.exception("tool %s failed unexpectedly", name)
            result = ToolResult(f"Error: the tool failed unexpectedly ({exc.__class__.__name__}: {exc}); "
                                "try another way", ok=False)
        duration = time.monotonic() - started
        log.info("tool %s (%s) -> %s in %.2f s", name, summary, "ok" if result.ok else "error", duration)
        output = result.output
        if len(output) > EVENT_OUTPUT_CHARS:
            output = output[:EVENT_OUTPUT_CHARS] + f"\n[... {len(result.output) - EVENT_OUTPUT_CHARS} more characters]"
        self._events.emit(ToolCallFinishedEvent(call_id, name or "(no name)", result.ok, result.exit_code,
                                                output, round(duration, 3)))
        return result

    def _failure_summary(self, reason: str) -> str:
        text = f"The agent stopped before finishing: {reason}.\n"
        if self.last_text:
            text += f"\nIts last message was:\n\n{self.last_text}\n"
        return text


def _size(message: dict[str, Any]) -> int:
    content = message.get("content")
    size = len(content) if isinstance(content, str) else 0
    for call in message.get("tool_calls") or ():
        size += len(call["function"]["arguments"])
    return size


def elide_old_tool_outputs(messages: list[dict[str, Any]], max_chars: int, keep_recent: int) -> int:
    """Replace the oldest tool outputs with a stub until the conversation fits; returns how many.

    The system prompt, the task, the assistant's own messages and the `keep_recent` latest tool outputs
    are never touched, so the model keeps its instructions and its own reasoning.
    """
    total = sum(_size(m) for m in messages)
    if total <= max_chars:
        return 0
    tool_indexes = [i for i, m in enumerate(messages) if m.get("role") == "tool"]
    elided = 0
    for i in tool_indexes[: max(len(tool_indexes) - keep_recent, 0)]:
        if total <= max_chars:
            break
        content = messages[i].get("content")
        if not isinstance(content, str) or content == ELIDED or len(content) <= len(ELIDED):
            continue
        total -= len(content) - len(ELIDED)
        messages[i] = {**messages[i], "content": ELIDED}
        elided += 1
    return elided
