"""`POST /v1/agent/events`: the agent's progress, decoded strictly and handed to the sink.

The body is `{"events": [...]}` and nothing else; each event is decoded with `agent.wire.event_from_dict`
(known kind, no unknown or missing fields) and, on top of that, every field's JSON type is checked
against the event class's annotations (`ok` a boolean, `exit_code` an integer or null, `duration_s` a
number...), so a malformed event is refused at the wall with a 400 that names it (`events[3]: ...`)
instead of surfacing later inside the runner. A batch is all or nothing.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from agent.wire import AgentEvent, WireError, event_from_dict

MAX_EVENTS_PER_POST = 1000


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _checked(event: AgentEvent, where: str) -> AgentEvent:
    """The event if every field has its declared type; JSON integers in float fields become floats."""
    floats: dict[str, float] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        hint = _hints(type(event))[f.name]
        if not _matches(value, hint):
            raise WireError(f"{where}: {event.kind} event field {f.name!r} must be {_describe(hint)}, "
                            f"got {json.dumps(value)[:80]}")
        if hint is float and isinstance(value, int):
            floats[f.name] = float(value)
    return dataclasses.replace(event, **floats) if floats else event  # type: ignore[arg-type]


def decode_events(body: Any) -> list[AgentEvent]:
    """The events of a POST body; `WireError` naming the first problem otherwise."""
    if not isinstance(body, dict):
        raise WireError("the body must be a JSON object {\"events\": [...]}")
    unknown = set(body) - {"events"}
    if unknown:
        raise WireError(f"unknown field(s) {sorted(unknown)}; the body is {{\"events\": [...]}}")
    events = body.get("events")
    if not isinstance(events, list):
        raise WireError("'events' must be an array")
    if len(events) > MAX_EVENTS_PER_POST:
        raise WireError(f"{len(events)} events in one post; at most {MAX_EVENTS_PER_POST}")
    decoded: list[AgentEvent] = []
    for i, obj in enumerate(events):
        try:
            event = event_from_dict(obj)
        except WireError as exc:
            raise WireError(f"events[{i}]: {exc}") from None
        decoded.append(_checked(event, f"events[{i}]"))
    return decoded
