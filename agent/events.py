"""Progress events to the runner, posted from a background thread as soon as they happen.

The editor shows what the agent does while it does it (bar: agent emits → editor receives, p50 ≤ 10 ms),
so `emit` never waits on the network: it appends to a queue and wakes the sender thread, which posts at
once. While a post is in flight, further events pile up and leave together in the next one, so a burst
(say, setup.sh printing a thousand lines) costs a few requests, not a thousand, and order is kept.

Posting is best effort: a failed post is retried briefly and then dropped with a log line. An agent that
cannot report progress can still do its task and leave its outputs, which matter more. `close` flushes
what is queued, bounded by a deadline so a dead gateway cannot hold the agent's exit hostage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from agent.gateway import GatewayConnection, GatewayUnreachable
from agent.wire import EVENTS_PATH, AgentEvent, event_to_dict

log = logging.getLogger(__name__)

MAX_BATCH = 500
_RETRY_DELAYS_S = (0.05, 0.25, 1.0)


class EventSink(Protocol):
    """Where the agent's parts report progress (the loop, the setup phase, the task)."""

    def emit(self, event: AgentEvent) -> None: ...


class EventSender:
    """Posts events to the gateway's `/v1/agent/events` from its own thread, coalescing bursts."""

    def __init__(self, connection: GatewayConnection, *,
                 retry_delays_s: tuple[float, ...] = _RETRY_DELAYS_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._connection = connection
        self._retry_delays_s = retry_delays_s
        self._sleep = sleep
        self._queue: list[AgentEvent] = []
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="agent-events", daemon=True)
        self.sent = 0
        self.dropped = 0

    def start(self) -> EventSender:
        self._thread.start()
        return self

    def emit(self, event: AgentEvent) -> None:
        with self._cond:
            if self._closing and not self._thread.is_alive():
                self.dropped += 1
                return
            self._queue.append(event)
            self._cond.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send everything queued so far (within `timeout_s`), then stop the thread."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s + 1.0)
        self._connection.close()
        with self._cond:
            lost = len(self._queue)
            self._queue.clear()
        self.dropped += lost
        if self.dropped:
            log.warning("%d event(s) could not be delivered to the gateway", self.dropped)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
            self._post(batch)

    def _post(self, batch: list[AgentEvent]) -> None:
        payload = {"events": [event_to_dict(e) for e in batch]}
        for attempt in range(len(self._retry_delays_s) + 1):
            try:
                reply = self._connection.post_json(EVENTS_PATH, payload)
            except GatewayUnreachable as exc:
                problem = str(exc)
            except Exception as exc:  # a bug here must not take the agent down with it
                log.exception("posting events failed")
                problem = f"{exc.__class__.__name__}: {exc}"
            else:
                if 200 <= reply.status < 300:
                    self.sent += len(batch)
                    return
                problem = reply.error_message()
                # A refusal (bad token, malformed event) will not get better by asking again.
                if reply.status < 500 and reply.status not in (408, 429):
                    break
            if attempt == len(self._retry_delays_s) or time.monotonic() >= self._deadline:
                break
            self._sleep(self._retry_delays_s[attempt])
        self.dropped += len(batch)
        log.warning("dropped %d event(s): %s", len(batch), problem)
