"""The names the composition (and anyone else) may import from `runner.adapters.nats`, pinned."""

from __future__ import annotations

import pytest

import runner.adapters.nats as package

pytestmark = pytest.mark.timeout(10)


def test_the_public_names_are_these() -> None:
    assert sorted(package.__all__) == [
        "JetStreamDelivery", "JetStreamEventLog", "JetStreamLimits", "JetStreamTaskQueue", "KvTaskStore", "Layout",
        "NatsAdapters", "NatsConnection", "NatsSettings", "ensure_layout", "open_nats_adapters"]
    for name in package.__all__:
        assert getattr(package, name).__module__.startswith("runner.adapters.nats")
