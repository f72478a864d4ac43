"""Bounded retries through a NATS outage, for operations that must not be lost.

`retrying(conn, what, attempt)` runs `attempt` until it returns, raises something that is not a transient
NATS error (`connection.is_transient`), or `NatsSettings.retry_s` has passed; then it raises
`Unavailable` naming `what`, with the last NATS error as `__cause__`. An attempt starts only while the
connection is up (otherwise it waits for the client to reconnect: no spinning, and no request sitting in
the client's buffer for its whole timeout), and attempts back off exponentially from 50 ms to 1 s with
jitter, because a restarted server answers 503 for a moment while JetStream recovers its streams. An
attempt in flight when the connection drops ends at once (`NatsConnection.cut_on_disconnect`) instead of
waiting for its request timeout. The whole takes at most `retry_s` plus one request timeout (a first
attempt whose server stops answering without the connection dropping).

An attempt that timed out may still have taken effect on the server; each caller makes its attempts safe
to repeat (a `Nats-Msg-Id` that JetStream de-duplicates, a compare-and-set checked against what is
stored) before handing them to this function.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from runner.adapters.nats.connection import NatsConnection, is_transient
from runner.domain.errors import CodexError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.05
MAX_DELAY_S = 1.0


async def retrying(conn: NatsConnection, what: str, attempt: Callable[[], Awaitable[T]], *,
                   retry_s: float | None = None) -> T:
    loop = asyncio.get_running_loop()
    budget = conn.settings.retry_s if retry_s is None else retry_s
    deadline = loop.time() + budget
    delay = FIRST_DELAY_S
    failures = 0
    while True:
        try:
            if not conn.connected and not conn.closed:
                # A request made now would wait in the client's buffer for its whole timeout.
                await conn.wait_connected(deadline - loop.time())
                if not conn.connected:
                    raise ConnectionError("not connected")
            # Later attempts end with the budget; the first has its requests' own timeouts.
            async with asyncio.timeout(max(0.05, deadline - loop.time()) if failures else None), \
                    conn.cut_on_disconnect():
                result = await attempt()
        except CodexError:
            raise
        except Exception as exc:
            remaining = deadline - loop.time()
            if conn.closed or not is_transient(exc) or remaining <= 0:
                raise conn.unavailable(what, exc) from exc
            failures += 1
            if failures == 1:
                log.info("NATS operation failed; retrying", extra={"what": what, "error": repr(exc),
                                                                   "retry_s": budget})
            await asyncio.sleep(min(delay * random.uniform(0.5, 1.0), max(0.0, deadline - loop.time())))
            delay = min(delay * 2, MAX_DELAY_S)
            continue
        if failures:
            log.info("NATS operation succeeded after retries", extra={"what": what, "failures": failures})
        return result
