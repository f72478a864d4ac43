"""SIGTERM handling: raised at once, except while a child is being started (then at the next check)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from agent import signals
from agent.signals import Terminated

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signals.install()
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # the handler runs here, in the main thread


def test_sigterm_raises_terminated(handlers: None) -> None:
    with pytest.raises(Terminated) as info:
        _sigterm_self()
        for _ in range(1000):
            pass
    assert info.value.signum == signal.SIGTERM
    assert str(info.value) == "SIGTERM"


def test_deferred_holds_the_signal_until_check(handlers: None) -> None:
    reached = False
    with pytest.raises(Terminated), signals.deferred():
        _sigterm_self()
        reached = True  # not interrupted here
        signals.check()
        pytest.fail("check() must raise")
    assert reached
    signals.check()  # nothing pending any more


def test_deferred_raises_when_the_block_ends(handlers: None) -> None:
    finished_block = False
    with pytest.raises(Terminated), signals.deferred():
        with signals.deferred():  # nested: only the outermost end raises
            _sigterm_self()
        finished_block = True
    assert finished_block
