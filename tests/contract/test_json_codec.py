"""The JSON form of task records and events (`json_codec`): lossless, enums by name, strict decoding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner.adapters.json_codec import (
    PAYLOAD_TYPES,
    DecodeError,
    decode_event,
    decode_payload,
    decode_task,
    encode_event,
    encode_payload,
    encode_task,
)
from runner.domain.models import Event, EventPayload, TaskLimits, TaskRecord

from .samples import every_payload, full_record, record

pytestmark = pytest.mark.timeout(10)


def task_json(rec: TaskRecord | None = None) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(encode_task(rec or full_record()))
    return decoded


def test_every_event_payload_kind_has_a_sample() -> None:
    assert {type(p) for p in every_payload()} == set(PAYLOAD_TYPES.values())


@pytest.mark.parametrize("payload", every_payload(), ids=lambda p: type(p).__name__)
def test_payloads_and_events_round_trip(payload: EventPayload) -> None:
    assert decode_payload(encode_payload(payload)) == payload
    event = Event(task_id="t1", seq=7, time=1_700_000_000.123456, payload=payload)
    assert decode_event(encode_event(event)) == event


def test_a_task_record_round_trips_with_every_field() -> None:
    rec = full_record()
    assert decode_task(encode_task(rec)) == rec
    assert decode_task(encode_task(rec).encode()) == rec


def test_enums_are_stored_by_name_and_kinds_by_type() -> None:
    assert task_json()["state"] == "RUNNING"
    assert json.loads(encode_payload(every_payload()[0])) == {"type": "state_changed", "state": "PREPARING",
                                                              "reason": "attempt 2"}


def test_a_missing_field_with_a_default_takes_it() -> None:
    obj = task_json(record())
    del obj["limits"], obj["usage"], obj["files_changed"]
    rec = decode_task(json.dumps(obj))
    assert rec.limits == TaskLimits() and rec.files_changed == 0


@pytest.mark.parametrize(("path", "value", "message"), [
    (["state"], "RUNNINGX", "state"),
    (["state"], 3, "state"),
    (["attempt"], True, "attempt"),
    (["attempt"], 1.5, "attempt"),
    (["attempt"], "1", "attempt"),
    (["created_at"], "yesterday", "created_at"),
    (["cancel_requested"], 1, "cancel_requested"),
    (["instruction"], None, "instruction"),
    (["manifest_digest", "hash"], "ABC", "manifest_digest"),
    (["manifest_digest", "size"], -1, "manifest_digest"),
    (["artifacts"], {"name": "x"}, "artifacts"),
    (["artifacts", 0, "digest"], None, "artifacts[0].digest"),
    (["limits", "max_steps"], 2.0, "limits.max_steps"),
])
def test_wrong_values_are_refused_naming_the_field(path: list[Any], value: object, message: str) -> None:
    obj = task_json()
    target: Any = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(DecodeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_task(json.dumps(obj))


def test_unknown_and_missing_required_fields_are_refused() -> None:
    obj = task_json()
    obj["surprise"] = 1
    with pytest.raises(DecodeError, match="surprise"):
        decode_task(json.dumps(obj))
    obj = task_json()
    del obj["tenant"]
    with pytest.raises(DecodeError, match="tenant"):
        decode_task(json.dumps(obj))
    obj = task_json()
    obj["usage"]["extra"] = 0
    with pytest.raises(DecodeError, match="usage"):
        decode_task(json.dumps(obj))


@pytest.mark.parametrize("text", [
    "", "not json", "[]", "null", '{"type": "no_such_kind"}', '{"text": "no type"}',
    '{"type": "log_line", "stream": "agent"}', '{"type": "log_line", "stream": "agent", "text": "x", "more": 1}',
    '{"type": "tool_call_finished", "call_id": "c", "name": "n", "ok": true, "exit_code": 1.0, "output": "",'
    ' "duration_s": 1}',
    '{"type": "tool_call_finished", "call_id": "c", "name": "n", "ok": true, "exit_code": 0, "output": "",'
    ' "duration_s": NaN}',
    '{"type": "task_result", "state": "COMPLETED", "reason": "", "files_changed": 0, "artifacts": "diff.patch"}',
])
def test_malformed_payloads_are_refused(text: str) -> None:
    with pytest.raises(DecodeError):
        decode_payload(text)


def test_an_event_needs_exactly_its_fields() -> None:
    good = json.loads(encode_event(Event("t", 1, 2.0, every_payload()[1])))
    decode_event(json.dumps(good))
    for broken in ({**good, "extra": 1}, {k: v for k, v in good.items() if k != "seq"}, {**good, "seq": "1"}):
        with pytest.raises(DecodeError):
            decode_event(json.dumps(broken))

