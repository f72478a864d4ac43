"""Stopping on SIGTERM/SIGINT without leaving processes behind.

The worker stops a task by sending SIGTERM; the agent should then stop what it is doing, still write its
outputs, and exit. The handler raises `Terminated` in the main thread, which interrupts whatever it is
blocked on (a model request, a wait) and unwinds to the task, which finishes as usual.

One place must not be interrupted at an arbitrary point: between starting a child process and being
ready to kill it. If the exception landed there, the child's process group would outlive the agent.
Code in that window runs inside `deferred()`: a signal arriving then is only noted, and raised by the
next `check()` (placed where the child can be cleaned up) or when the window closes.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(BaseException):
    """The agent was asked to stop. A BaseException so that no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    """The process's signal state (one per process: signal handlers run in the main thread only)."""

    deferring = 0
    pending: int | None = None


def _handler(signum: int, frame: FrameType | None) -> None:
    if _State.deferring:
        _State.pending = signum
        return
    raise Terminated(signum)


def install() -> None:
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def check() -> None:
    """Raise `Terminated` now if a signal arrived while deferred."""
    signum, _State.pending = _State.pending, None
    if signum is not None:
        raise Terminated(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold back `Terminated` inside the block, except where `check()` is called."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
        if not _State.deferring:
            check()
