"""`POST /v1/agent/events`: strict decoding at the wall, delivery to the sink, a broken sink survived."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from agent.wire import (
    AgentEvent,
    AssistantMessageEvent,
    LogEvent,
    PhaseEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
    event_to_dict,
)
from runner.gateway import Budget, Gateway

pytestmark = pytest.mark.timeout(20)

Raw = Callable[[Gateway], aiohttp.ClientSession]

EVENTS: list[AgentEvent] = [
    PhaseEvent("RUNNING"),
    LogEvent("agent", "reading AGENTS.md"),
    ToolCallStartedEvent("call_0_0", "run_shell_command", "ls -la"),
    ToolCallFinishedEvent("call_0_0", "run_shell_command", True, 0, "README.md\n", 0.25),
    ToolCallFinishedEvent("call_1_0", "run_shell_command", False, None, "timed out", 120),
    AssistantMessageEvent("Done."),
]


async def _post(http: aiohttp.ClientSession, token: str, body: Any = None, data: bytes | None = None,
                ) -> tuple[int, Any]:
    async with http.post("http://localhost/v1/agent/events", json=body if data is None else None, data=data,
                         headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json()


async def test_events_reach_the_sink_typed(gateway: Gateway, raw: Raw, sink: Any) -> None:
    token = gateway.open_session("task-7", "alice", Budget())
    status, body = await _post(raw(gateway), token, {"events": [event_to_dict(e) for e in EVENTS]})
    assert status == 200
    assert body == {"accepted": len(EVENTS)}
    # The integer 120 arrived as a JSON number and is accepted for a float field.
    assert sink.events == [("task-7", EVENTS)]
    assert type(sink.events[0][1][4].duration_s) is float
    status, body = await _post(raw(gateway), token, {"events": []})
    assert status == 200 and body == {"accepted": 0}


@pytest.mark.parametrize(("payload", "fragment"), [
    ([], "JSON object"),
    ({"events": [], "extra": 1}, "unknown field(s) ['extra']"),
    ({"event": []}, "unknown field(s) ['event']"),
    ({"events": {}}, "'events' must be an array"),
    ({"events": [{"kind": "nope"}]}, "events[0]: event: unknown kind 'nope'"),
    ({"events": [{"kind": "log", "stream": "agent"}]}, "events[0]: log event"),
    ({"events": [event_to_dict(EVENTS[0]), {"kind": "log", "stream": "agent", "text": "x", "colour": "red"}]},
     "events[1]: log event: unknown field(s) ['colour']"),
    ({"events": [{"kind": "phase", "phase": "DANCING"}]}, "unknown phase 'DANCING'"),
    ({"events": [{"kind": "log", "stream": "agent", "text": 5}]}, "events[0]: log event field 'text' must be str"),
    ({"events": [{**event_to_dict(EVENTS[3]), "ok": "yes"}]}, "field 'ok' must be bool"),
    ({"events": [{**event_to_dict(EVENTS[3]), "exit_code": 1.5}]}, "field 'exit_code' must be int | None"),
    ({"events": [{**event_to_dict(EVENTS[3]), "exit_code": True}]}, "field 'exit_code'"),
    ({"events": [{**event_to_dict(EVENTS[3]), "duration_s": "fast"}]}, "field 'duration_s' must be float"),
    ({"events": [event_to_dict(EVENTS[1])] * 1001}, "at most 1000"),
])
async def test_malformed_events_are_refused_naming_the_problem(gateway: Gateway, raw: Raw, sink: Any,
                                                               payload: Any, fragment: str) -> None:
    token = gateway.open_session("task-7", "alice", Budget())
    status, body = await _post(raw(gateway), token, payload)
    assert status == 400
    assert fragment in body["error"]["message"]
    assert body["error"]["code"] == "invalid_event"
    assert sink.events == []  # all or nothing


async def test_events_body_that_is_not_json(gateway: Gateway, raw: Raw) -> None:
    token = gateway.open_session("task-7", "alice", Budget())
    status, body = await _post(raw(gateway), token, data=b"{nope")
    assert status == 400
    assert "not JSON" in body["error"]["message"]


async def test_a_failing_sink_is_a_500_and_the_gateway_goes_on(gateway: Gateway, raw: Raw, sink: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    token = gateway.open_session("task-7", "alice", Budget())
    payload = {"events": [event_to_dict(EVENTS[1])]}
    sink.fail_events = True
    status, body = await _post(raw(gateway), token, payload)
    assert status == 500
    assert body["error"]["type"] == "server_error"
    assert "event store is down" not in body["error"]["message"]  # internals stay in the log
    assert any("sink failed" in r.getMessage() for r in caplog.records)
    assert all(token not in r.getMessage() for r in caplog.records)
    sink.fail_events = False
    status, _ = await _post(raw(gateway), token, payload)
    assert status == 200
    assert sink.events == [("task-7", [EVENTS[1]])]
