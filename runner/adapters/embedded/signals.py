"""In-process wake-ups for coroutines that wait for new rows (event watchers, queue receivers).

The pattern that loses no wake-up: take a `ticket()` *before* checking the database, and if there was
nothing, wait on that ticket. A `fire()` that happens after the ticket was taken (even while the check
was still running on the database thread) sets it, so the waiter checks again; one that happened before
is already visible to the check. Every `fire` wakes all current waiters and hands later ones a fresh
ticket, so nothing needs resetting and no waiter can consume another's wake-up.
"""

from __future__ import annotations

import asyncio


class Broadcast:
    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


async def wait(ticket: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until the ticket fires or `timeout_s` passes; True if it fired."""
    if ticket.is_set():
        return True
    if timeout_s is not None and timeout_s <= 0:
        return False
    try:
        async with asyncio.timeout(timeout_s):
            await ticket.wait()
    except TimeoutError:
        return False
    return True
