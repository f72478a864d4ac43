"""The wire contract between the agent (inside the sandbox) and the runner (outside).

Three messages cross the sandbox wall, all JSON:

1. `AgentTaskSpec`: the worker writes it as one line to the agent's standard input. A warm sandbox
   (started before any task exists) blocks on that line; everything task-specific arrives with it.
2. Agent events: the agent POSTs `{"events": [...]}` to the gateway at `/v1/agent/events` with
   `Authorization: Bearer <token>`; each event is one of the `*Event` shapes below (`kind` selects).
3. `AgentResult`: the agent's verdict, written to `/output/result.json` before it exits.

Besides those, the agent calls the gateway's OpenAI-compatible `/v1/chat/completions`.
The runner imports this module; it imports nothing from the runner.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

GATEWAY_SOCKET_IN_SANDBOX = "/run/codex/gateway.sock"
EVENTS_PATH = "/v1/agent/events"
CHAT_PATH = "/v1/chat/completions"
RESULT_FILE = "result.json"

# Files the agent leaves in /output. The worker accepts these names and no others.
OUTPUT_FILES = ("diff.patch", "prompt.txt", "setup.log", "summary.md", RESULT_FILE)


class WireError(ValueError):
    """A message that does not have the contract's shape."""


def _check(obj: Any, cls: type[Any], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise WireError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = set(obj) - names
    if unknown:
        raise WireError(f"{where}: unknown field(s) {sorted(unknown)}")
    return obj


@dataclass(frozen=True, slots=True)
class AgentTaskSpec:
    task_id: str
    token: str
    instruction: str
    model: str
    workspace: str = "/workspace"
    output: str = "/output"
    gateway_socket: str = GATEWAY_SOCKET_IN_SANDBOX
    # `http(s)://host:port` of the gateway when it is reached over TCP (a Kubernetes pod); when set,
    # `gateway_socket` is not used.
    gateway_url: str = ""
    max_steps: int = 50
    command_timeout_s: float = 120.0
    setup_timeout_s: float = 600.0
    tool_output_limit: int = 16_000  # characters of a tool's output returned to the model
    # Optional focus from the editor: workspace-relative paths and a "path:line-line" range.
    focus_paths: tuple[str, ...] = ()
    focus_range: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> AgentTaskSpec:
        try:
            obj = json.loads(data)
        except json.JSONDecodeError as exc:
            raise WireError(f"task spec is not JSON: {exc}") from exc
        obj = dict(_check(obj, cls, "task spec"))
        if "focus_paths" in obj:
            obj["focus_paths"] = tuple(obj["focus_paths"])
        try:
            return cls(**obj)
        except TypeError as exc:
            raise WireError(f"task spec: {exc}") from exc


Phase = Literal["SETTING_UP", "RUNNING", "UPLOADING"]


@dataclass(frozen=True, slots=True)
class PhaseEvent:
    phase: Phase
    kind: Literal["phase"] = "phase"


@dataclass(frozen=True, slots=True)
class LogEvent:
    stream: str  # "setup" or "agent"
    text: str
    kind: Literal["log"] = "log"


@dataclass(frozen=True, slots=True)
class ToolCallStartedEvent:
    call_id: str
    name: str
    arguments: str
    kind: Literal["tool_call_started"] = "tool_call_started"


@dataclass(frozen=True, slots=True)
class ToolCallFinishedEvent:
    call_id: str
    name: str
    ok: bool
    exit_code: int | None
    output: str
    duration_s: float
    kind: Literal["tool_call_finished"] = "tool_call_finished"


@dataclass(frozen=True, slots=True)
class AssistantMessageEvent:
    text: str
    kind: Literal["assistant_message"] = "assistant_message"


AgentEvent = PhaseEvent | LogEvent | ToolCallStartedEvent | ToolCallFinishedEvent | AssistantMessageEvent

_EVENT_TYPES: dict[str, type[Any]] = {
    "phase": PhaseEvent,
    "log": LogEvent,
    "tool_call_started": ToolCallStartedEvent,
    "tool_call_finished": ToolCallFinishedEvent,
    "assistant_message": AssistantMessageEvent,
}


def event_to_dict(event: AgentEvent) -> dict[str, Any]:
    return asdict(event)


def event_from_dict(obj: Any) -> AgentEvent:
    if not isinstance(obj, dict):
        raise WireError("event: expected a JSON object")
    kind = obj.get("kind")
    cls = _EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"event: unknown kind {kind!r}")
    _check(obj, cls, f"{kind} event")
    try:
        event: AgentEvent = cls(**obj)
    except TypeError as exc:
        raise WireError(f"{kind} event: {exc}") from exc
    if isinstance(event, PhaseEvent) and event.phase not in ("SETTING_UP", "RUNNING", "UPLOADING"):
        raise WireError(f"phase event: unknown phase {event.phase!r}")
    return event


@dataclass(frozen=True, slots=True)
class AgentResult:
    status: Literal["completed", "failed"]
    reason: str = ""
    files_changed: int = 0
    steps: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> AgentResult:
        try:
            obj = json.loads(data)
        except json.JSONDecodeError as exc:
            raise WireError(f"result is not JSON: {exc}") from exc
        _check(obj, cls, "result")
        try:
            result = cls(**obj)
        except TypeError as exc:
            raise WireError(f"result: {exc}") from exc
        if result.status not in ("completed", "failed"):
            raise WireError(f"result: unknown status {result.status!r}")
        return result
