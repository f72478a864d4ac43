"""Keeping a long conversation under the model's context: the oldest tool outputs go first."""

from __future__ import annotations

from typing import Any

import pytest

from agent.loop import ELIDED, elide_old_tool_outputs

pytestmark = pytest.mark.timeout(10)


def _conversation(outputs: list[int]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "S" * 1000}, {"role": "user", "content": "task"}]
    for i, size in enumerate(outputs):
        messages.append({"role": "assistant", "content": f"step {i}", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "read_file_content", "arguments": "{}"}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "x" * size})
    return messages


def test_short_conversations_are_untouched() -> None:
    messages = _conversation([100, 100])
    before = [dict(m) for m in messages]
    assert elide_old_tool_outputs(messages, 10_000, keep_recent=1) == 0
    assert messages == before


def test_oldest_outputs_are_elided_until_it_fits() -> None:
    messages = _conversation([5000, 5000, 5000, 5000])
    assert elide_old_tool_outputs(messages, 12_000, keep_recent=1) == 2
    tool = [m["content"] for m in messages if m["role"] == "tool"]
    assert tool[:2] == [ELIDED, ELIDED]
    assert tool[2] == tool[3] == "x" * 5000
    assert messages[0]["content"] == "S" * 1000  # instructions are never elided
    assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == ["c0", "c1", "c2", "c3"]


def test_recent_outputs_are_kept_even_over_the_limit() -> None:
    messages = _conversation([5000, 5000, 5000])
    assert elide_old_tool_outputs(messages, 100, keep_recent=2) == 1
    tool = [m["content"] for m in messages if m["role"] == "tool"]
    assert tool == [ELIDED, "x" * 5000, "x" * 5000]
    assert elide_old_tool_outputs(messages, 100, keep_recent=2) == 0  # nothing more it may touch
