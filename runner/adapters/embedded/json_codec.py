"""JSON form of task records and events, for stores that keep them as text (SQLite here; a NATS KV
value or stream message would use the same form).

The codec walks the dataclasses of `runner.domain.models` by their type hints, so a field added there is
stored without touching this module. Decoding is strict, because stored data that does not decode is a
bug to surface, not to paper over:

* an unknown key, a wrong JSON type (`true` for an int, `1.5` for an int, a number for a string), an
  enum name that does not exist or a malformed digest raises `DecodeError` naming the field's path;
* enums are stored by name (`"RUNNING"`), tuples as arrays, `X | None` as `null` or X;
* a missing key is an error unless the field has a default in the dataclass, which it then takes: a
  field added with a default can still read records written before it existed.

Event payloads carry their kind in `"type"` (`PAYLOAD_TYPES`), e.g.
`{"type": "log_line", "stream": "agent", "text": "..."}`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from runner.domain.errors import CodexError, PermanentError
from runner.domain.models import (
    AssistantMessage,
    Event,
    EventPayload,
    LogLine,
    StateChanged,
    TaskRecord,
    TaskResult,
    TokenUsageEvent,
    ToolCallFinished,
    ToolCallStarted,
)


class DecodeError(PermanentError):
    """Stored or received JSON does not decode to the expected type."""


PAYLOAD_TYPES: Mapping[str, type[EventPayload]] = {
    "state_changed": StateChanged,
    "log_line": LogLine,
    "tool_call_started": ToolCallStarted,
    "tool_call_finished": ToolCallFinished,
    "assistant_message": AssistantMessage,
    "token_usage": TokenUsageEvent,
    "task_result": TaskResult,
}
_KIND_OF: Mapping[type, str] = {cls: kind for kind, cls in PAYLOAD_TYPES.items()}


# ---- public API -----------------------------------------------------------------------------------------


def encode_task(record: TaskRecord) -> str:
    return _dumps(to_json(record))


def decode_task(text: str | bytes) -> TaskRecord:
    return from_json(TaskRecord, _loads(text))


def payload_kind(payload: EventPayload) -> str:
    return _KIND_OF[type(payload)]


def encode_payload(payload: EventPayload) -> str:
    return _dumps(payload_to_json(payload))


def decode_payload(text: str | bytes) -> EventPayload:
    return payload_from_json(_loads(text))


def encode_event(event: Event) -> str:
    return _dumps({"task_id": event.task_id, "seq": event.seq, "time": event.time,
                   "payload": payload_to_json(event.payload)})


def decode_event(text: str | bytes) -> Event:
    obj = _loads(text)
    if not isinstance(obj, dict) or set(obj) != {"task_id", "seq", "time", "payload"}:
        raise DecodeError("an event must be an object with exactly task_id, seq, time and payload")
    return Event(task_id=_decode(str, obj["task_id"], "event.task_id"), seq=_decode(int, obj["seq"], "event.seq"),
                 time=_decode(float, obj["time"], "event.time"), payload=payload_from_json(obj["payload"]))


def payload_to_json(payload: EventPayload) -> dict[str, Any]:
    body = to_json(payload)
    assert isinstance(body, dict)
    return {"type": payload_kind(payload), **body}


def payload_from_json(obj: object) -> EventPayload:
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise DecodeError("an event payload must be an object with a string 'type'")
    kind = obj["type"]
    cls = PAYLOAD_TYPES.get(kind)
    if cls is None:
        raise DecodeError(f"unknown event type {kind[:80]!r}")
    return from_json(cls, {k: v for k, v in obj.items() if k != "type"}, kind)


def to_json(value: object) -> object:
    """A domain value as plain JSON data (dicts, lists, str, int, float, bool, None)."""
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


T = typing.TypeVar("T")


def from_json(cls: type[T], obj: object, where: str = "") -> T:
    """Decode plain JSON data into the dataclass `cls`, strictly (see the module docstring)."""
    return typing.cast(T, _decode(cls, obj, where or cls.__name__))


# ---- internals ------------------------------------------------------------------------------------------


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> None:
    raise DecodeError(f"JSON constant {name} is not allowed")


def _loads(text: str | bytes) -> object:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, required) of each field of a dataclass."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls))


def _decode(tp: Any, value: object, where: str) -> Any:
    if tp is str:
        if isinstance(value, str):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, str) and value in tp.__members__:
            return tp.__members__[value]
        raise DecodeError(f"{where}: {str(value)[:80]!r} is not one of {', '.join(tp.__members__)}")
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, value, where)
    elif typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{where}: only tuple[X, ...] is supported")
        if isinstance(value, list):
            return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    elif typing.get_origin(tp) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{where}: only X | None unions are supported")
        return None if value is None else _decode(options[0], value, where)
    else:
        raise TypeError(f"{where}: cannot decode type {tp!r}")
    name = getattr(tp, "__name__", str(tp))
    raise DecodeError(f"{where}: expected {name}, got {type(value).__name__} {str(value)[:80]!r}")


def _decode_dataclass(cls: type, value: object, where: str) -> object:
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: expected an object, got {type(value).__name__}")
    fields = _fields(cls)
    known = {name for name, _, _ in fields}
    unknown = [k for k in value if k not in known]
    if unknown:
        raise DecodeError(f"{where}: unknown field {unknown[0]!r}")
    kwargs: dict[str, Any] = {}
    for name, tp, required in fields:
        if name in value:
            kwargs[name] = _decode(tp, value[name], f"{where}.{name}")
        elif required:
            raise DecodeError(f"{where}: missing field {name!r}")
    try:
        return cls(**kwargs)
    except CodexError as exc:  # a value the dataclass itself refuses (a malformed digest)
        raise DecodeError(f"{where}: {exc}") from exc
