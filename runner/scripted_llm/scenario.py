"""Scenarios: what the scripted model answers, step by step.

A scenario is a JSON document::

    {
      "name": "edit-readme",
      "steps": [
        {"content": null,
         "tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "ls"}}],
         "expect_in_prompt": ["Fix the README"]},
        {"content": "All done."}
      ],
      "final": "Nothing more to do.",
      "stream_chunk_chars": 8,
      "report_usage": true
    }

The server is stateless about conversations: the step answered is the number of assistant messages
already in the request's `messages`. A retry of the same request gets the same step, and any number of
conversations can run side by side. Once the steps run out, the model answers `final` with no tool calls.

A step may also carry:

- `delay_s`: wait this long before answering (timeouts, latency); `chunk_delay_s`: wait between
  streamed chunks (lets tests see a stream arrive piece by piece);
- `error`: `{"status": 500, "message": "...", "times": 1}` answers an OpenAI-style error instead;
  with `times`, only the first N requests that reach this step fail, then the step answers normally
  (the only state the server keeps);
- `expect_in_prompt`: strings that must appear in the request's messages, or the server answers
  HTTP 400 naming the missing one (so a test proves, say, that AGENTS.md reached the model);
- per tool call, `raw_arguments` instead of `arguments`: sent verbatim, to test malformed calls.

`stream_chunk_chars` sets how finely streamed text and arguments are cut; `"report_usage": false`
leaves `usage` out of every answer, as some OpenAI-compatible servers do.

Validation is strict: unknown fields, wrong types and impossible combinations are refused with a
`ScenarioError` that names the offending place (`steps[2].tool_calls[0].arguments`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any


class ScenarioError(ValueError):
    """A scenario document that does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class ScriptedToolCall:
    name: str
    # Exactly what goes on the wire as `function.arguments`: JSON text, or anything for `raw_arguments`.
    arguments_text: str


@dataclass(frozen=True, slots=True)
class StepError:
    status: int
    message: str
    times: int | None = None  # None: every request reaching the step fails


@dataclass(frozen=True, slots=True)
class Step:
    content: str | None = None
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    error: StepError | None = None
    expect_in_prompt: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    steps: tuple[Step, ...] = ()
    final: str = "Done."
    stream_chunk_chars: int = 16
    report_usage: bool = True

    def step(self, index: int) -> Step | None:
        """The step answered when `index` assistant messages are already in the conversation."""
        return self.steps[index] if index < len(self.steps) else None

    @classmethod
    def from_dict(cls, obj: Any) -> Scenario:
        doc = _object(obj, "scenario", required={"name"},
                      optional={"steps", "final", "stream_chunk_chars", "report_usage", "description"})
        name = _string(doc["name"], "name", allow_empty=False)
        steps_raw = doc.get("steps", [])
        if not isinstance(steps_raw, list):
            raise ScenarioError(f"steps: expected a list, got {_type(steps_raw)}")
        steps = tuple(_step(s, f"steps[{i}]") for i, s in enumerate(steps_raw))
        final = _string(doc.get("final", "Done."), "final")
        chunk = doc.get("stream_chunk_chars", 16)
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ScenarioError(f"stream_chunk_chars: expected a positive integer, got {chunk!r}")
        if "description" in doc:
            _string(doc["description"], "description")
        report_usage = doc.get("report_usage", True)
        if not isinstance(report_usage, bool):
            raise ScenarioError(f"report_usage: expected true or false, got {report_usage!r}")
        return cls(name=name, steps=steps, final=final, stream_chunk_chars=chunk, report_usage=report_usage)

    @classmethod
    def loads(cls, text: str | bytes, source: str = "scenario") -> Scenario:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{source}: not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(obj)
        except ScenarioError as exc:
            raise ScenarioError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        path = Path(path)
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc.strerror or exc}") from exc
        return cls.loads(text, source=str(path))

    @classmethod
    def bundled(cls, name: str) -> Scenario:
        """A scenario shipped in `runner/scripted_llm/scenarios/` (`Scenario.bundled("noop")`)."""
        if not name or "/" in name or name.startswith("."):
            raise ScenarioError(f"bundled scenario name {name!r} is not a plain name")
        ref = resources.files("runner.scripted_llm").joinpath("scenarios", f"{name}.json")
        if not ref.is_file():
            raise ScenarioError(f"no bundled scenario {name!r}; have {bundled_names()}")
        return cls.loads(ref.read_bytes(), source=f"bundled scenario {name}")


def bundled_names() -> list[str]:
    folder = resources.files("runner.scripted_llm").joinpath("scenarios")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


# ---- strict decoding helpers ---------------------------------------------------------------------------


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _object(obj: Any, where: str, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise ScenarioError(f"{where}: expected a JSON object, got {_type(obj)}")
    unknown = set(obj) - required - optional
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(required | optional)}")
    missing = required - set(obj)
    if missing:
        raise ScenarioError(f"{where}: missing field(s) {sorted(missing)}")
    return obj


def _string(value: Any, where: str, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: expected a string, got {_type(value)}")
    if not allow_empty and not value:
        raise ScenarioError(f"{where}: must not be empty")
    return value


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ScenarioError(f"{where}: expected a non-negative number of seconds, got {value!r}")
    return float(value)


def _tool_call(obj: Any, where: str) -> ScriptedToolCall:
    doc = _object(obj, where, required={"name"}, optional={"arguments", "raw_arguments"})
    name = _string(doc["name"], f"{where}.name", allow_empty=False)
    if "arguments" in doc and "raw_arguments" in doc:
        raise ScenarioError(f"{where}: give either arguments or raw_arguments, not both")
    if "raw_arguments" in doc:
        return ScriptedToolCall(name, _string(doc["raw_arguments"], f"{where}.raw_arguments"))
    arguments = doc.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ScenarioError(f"{where}.arguments: expected a JSON object, got {_type(arguments)}")
    return ScriptedToolCall(name, json.dumps(arguments, ensure_ascii=False))


def _error(obj: Any, where: str) -> StepError:
    doc = _object(obj, where, required={"status"}, optional={"message", "times"})
    status = doc["status"]
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ScenarioError(f"{where}.status: expected an HTTP error status 400-599, got {status!r}")
    message = _string(doc.get("message", f"scripted error {status}"), f"{where}.message")
    times = doc.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ScenarioError(f"{where}.times: expected a positive integer, got {times!r}")
    return StepError(status, message, times)


def _step(obj: Any, where: str) -> Step:
    doc = _object(obj, where, required=set(),
                  optional={"content", "tool_calls", "delay_s", "chunk_delay_s", "error", "expect_in_prompt"})
    content = doc.get("content")
    if content is not None:
        content = _string(content, f"{where}.content")
    calls_raw = doc.get("tool_calls", [])
    if not isinstance(calls_raw, list):
        raise ScenarioError(f"{where}.tool_calls: expected a list, got {_type(calls_raw)}")
    calls = tuple(_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls_raw))
    error = _error(doc["error"], f"{where}.error") if "error" in doc else None
    expect_raw = doc.get("expect_in_prompt", [])
    if not isinstance(expect_raw, list):
        raise ScenarioError(f"{where}.expect_in_prompt: expected a list of strings, got {_type(expect_raw)}")
    expect = tuple(_string(s, f"{where}.expect_in_prompt[{i}]", allow_empty=False) for i, s in enumerate(expect_raw))
    answers = content is not None or bool(calls)
    if not answers and (error is None or error.times is not None):
        raise ScenarioError(f"{where}: a step needs content or tool_calls (or an error without 'times')")
    return Step(
        content=content,
        tool_calls=calls,
        delay_s=_seconds(doc.get("delay_s", 0), f"{where}.delay_s"),
        chunk_delay_s=_seconds(doc.get("chunk_delay_s", 0), f"{where}.chunk_delay_s"),
        error=error,
        expect_in_prompt=expect,
    )
