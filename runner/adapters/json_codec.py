"""JSON form of task records and events, for stores that keep them as text (SQLite here; a NATS KV
value or stream message would use the same form).

The codec follows the type hints of the dataclasses of `runner.domain.models` (an encoder and a decoder
are built once per type), so a field added there is stored without touching this module. Decoding is
strict, because stored data that does not decode is a bug to surface, not to paper over:

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
from collections.abc import Callable, Mapping
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
    return _dumps(_encoder(TaskRecord)(record))


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
    try:
        task_id, seq, at = _decode_str(obj["task_id"]), _decode_int(obj["seq"]), _decode_float(obj["time"])
    except _Bad as bad:
        raise DecodeError(f"event: {bad}") from None
    return Event(task_id=task_id, seq=seq, time=at, payload=payload_from_json(obj["payload"]))


def payload_to_json(payload: EventPayload) -> dict[str, Any]:
    body = _encoder(type(payload))(payload)
    return {"type": payload_kind(payload), **body}


def payload_from_json(obj: object) -> EventPayload:
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise DecodeError("an event payload must be an object with a string 'type'")
    kind = obj["type"]
    cls = PAYLOAD_TYPES.get(kind)
    if cls is None:
        raise DecodeError(f"unknown event type {kind[:80]!r}")
    return from_json(cls, {k: v for k, v in obj.items() if k != "type"}, kind)


def to_json(value: object) -> Any:
    """A domain dataclass as plain JSON data (dicts, lists, str, int, float, bool, None)."""
    return _encoder(type(value))(value)


T = typing.TypeVar("T")


def from_json(cls: type[T], obj: object, where: str = "") -> T:
    """Decode plain JSON data into the dataclass `cls`, strictly (see the module docstring)."""
    try:
        return typing.cast(T, _decoder(cls)(obj))
    except _Bad as bad:
        raise DecodeError(f"{where or cls.__name__}{''.join(reversed(bad.path))}: {bad}") from None


# ---- internals ------------------------------------------------------------------------------------------
#
# An encoder and a decoder are built once per type from its type hints (`_encoder`, `_decoder`) and
# cached, so encoding or decoding a record walks prepared closures rather than inspecting types again.
# Decoders raise `_Bad`; each enclosing dataclass or tuple adds its step to the path on the way out, so
# the path of the offending field is only built when something is wrong.


class _Bad(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.path: list[str] = []


Encoder = Callable[[Any], Any]
Decoder = Callable[[object], Any]


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


def _identity(value: Any) -> Any:
    return value


_ENCODERS: dict[object, Encoder] = {}
_DECODERS: dict[object, Decoder] = {}


def _encoder(tp: object) -> Encoder:
    enc = _ENCODERS.get(tp)
    if enc is None:
        enc = _ENCODERS[tp] = _build_encoder(tp)
    return enc


def _decoder(tp: object) -> Decoder:
    dec = _DECODERS.get(tp)
    if dec is None:
        dec = _DECODERS[tp] = _build_decoder(tp)
    return dec


def _build_encoder(tp: Any) -> Encoder:
    if tp in (str, int, float, bool):
        return _identity
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return lambda value: value.name
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        fields = [(name, _encoder(ftp)) for name, ftp, _ in _fields(tp)]
        return lambda value: {name: enc(getattr(value, name)) for name, enc in fields}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _encoder(args[0])
        return lambda value: [item(v) for v in value]
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            inner = _encoder(options[0])
            return lambda value: None if value is None else inner(value)
    raise TypeError(f"cannot encode type {tp!r} as JSON")


def _show(value: object) -> str:
    return f"{type(value).__name__} {str(value)[:80]!r}"


def _decode_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise _Bad(f"expected str, got {_show(value)}")


def _decode_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _Bad(f"expected bool, got {_show(value)}")


def _decode_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _Bad(f"expected int, got {_show(value)}")


def _decode_float(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _Bad(f"expected float, got {_show(value)}")


_PRIMITIVES: dict[type, Decoder] = {str: _decode_str, bool: _decode_bool, int: _decode_int, float: _decode_float}


def _build_decoder(tp: Any) -> Decoder:
    if tp in _PRIMITIVES:
        return _PRIMITIVES[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_decoder(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _tuple_decoder(_decoder(args[0]))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            inner = _decoder(options[0])
            return lambda value: None if value is None else inner(value)
    raise TypeError(f"cannot decode type {tp!r} from JSON")


def _enum_decoder(cls: type[enum.Enum]) -> Decoder:
    members = cls.__members__

    def decode(value: object) -> enum.Enum:
        if isinstance(value, str) and value in members:
            return members[value]
        raise _Bad(f"{str(value)[:80]!r} is not one of {', '.join(members)}")
    return decode


def _tuple_decoder(item: Decoder) -> Decoder:
    def decode(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _Bad(f"expected an array, got {_show(value)}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except _Bad as bad:
                bad.path.append(f"[{i}]")
                raise
        return tuple(out)
    return decode


def _dataclass_decoder(cls: type) -> Decoder:
    spec = _fields(cls)
    known = frozenset(name for name, _, _ in spec)
    # Resolved lazily: a dataclass may refer to itself or to one not built yet.
    fields: list[tuple[str, Decoder, bool]] = []

    def decode(value: object) -> object:
        if not fields:
            fields.extend((name, _decoder(ftp), required) for name, ftp, required in spec)
        if not isinstance(value, dict):
            raise _Bad(f"expected an object, got {type(value).__name__}")
        if not known.issuperset(value):
            raise _Bad(f"unknown field {next(k for k in value if k not in known)!r}")
        kwargs: dict[str, Any] = {}
        for name, dec, required in fields:
            if name in value:
                try:
                    kwargs[name] = dec(value[name])
                except _Bad as bad:
                    bad.path.append(f".{name}")
                    raise
            elif required:
                raise _Bad(f"missing field {name!r}")
        try:
            return cls(**kwargs)
        except CodexError as exc:  # a value the dataclass itself refuses (a malformed digest)
            raise _Bad(str(exc)) from exc
    return decode
