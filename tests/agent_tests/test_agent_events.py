"""Progress events: posted from a background thread at once, coalesced under load, never fatal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agent_testing import Stack

from agent.events import EventSender
from agent.gateway import GatewayConnection
from agent.wire import LogEvent, PhaseEvent, ToolCallFinishedEvent

pytestmark = pytest.mark.timeout(30)

MakeStack = Callable[[dict[str, Any]], Awaitable[Stack]]
NOOP = {"name": "noop"}


def _sender(socket: Path, token: str) -> EventSender:
    return EventSender(GatewayConnection(str(socket), token, 5.0), retry_delays_s=(0.01, 0.01)).start()


async def test_an_event_is_posted_without_waiting_for_more(make_stack: MakeStack) -> None:
    stack = await make_stack(NOOP)
    sender = _sender(stack.socket, stack.open_session())
    try:
        sender.emit(PhaseEvent("RUNNING"))
        for _ in range(500):
            if stack.sink.events:
                break
            await asyncio.sleep(0.01)
        assert stack.sink.events == [PhaseEvent("RUNNING")]
    finally:
        await asyncio.to_thread(sender.close)
    assert sender.sent == 1 and sender.dropped == 0


async def test_bursts_are_coalesced_in_order_and_flushed_on_close(make_stack: MakeStack) -> None:
    stack = await make_stack(NOOP)
    sender = _sender(stack.socket, stack.open_session())

    def burst() -> None:
        for i in range(3000):
            sender.emit(LogEvent(stream="setup", text=f"line {i}"))
        sender.emit(ToolCallFinishedEvent("c1", "run_shell_command", True, 0, "ok", 0.25))
        sender.close()

    await asyncio.to_thread(burst)
    texts = [e.text for e in stack.sink.events if isinstance(e, LogEvent)]
    assert texts == [f"line {i}" for i in range(3000)]
    assert stack.sink.events[-1] == ToolCallFinishedEvent("c1", "run_shell_command", True, 0, "ok", 0.25)
    assert stack.sink.posts < 300, "a burst must leave in batches, not one post per event"
    assert sender.sent == 3001


async def test_refused_events_are_dropped_not_fatal(make_stack: MakeStack) -> None:
    stack = await make_stack(NOOP)
    stack.open_session()
    sender = _sender(stack.socket, "not-the-token")
    sender.emit(PhaseEvent("RUNNING"))
    await asyncio.to_thread(sender.close)
    assert stack.sink.events == []
    assert sender.dropped == 1


async def test_unreachable_gateway_does_not_hold_up_exit(short_dir: Path) -> None:
    sender = _sender(short_dir / "nobody.sock", "tok")
    for i in range(10):
        sender.emit(LogEvent(stream="agent", text=str(i)))
    started = time.monotonic()
    await asyncio.to_thread(sender.close, 1.0)
    assert time.monotonic() - started < 3
    assert sender.dropped == 10
    sender.emit(LogEvent(stream="agent", text="after close"))  # harmless
