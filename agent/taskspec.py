"""Reading and checking the task spec the worker writes to the agent's standard input.

`AgentTaskSpec.from_json` checks the shape (no unknown fields, required fields present); this module
adds the checks of values a JSON decoder cannot make (a string where a number belongs, a zero step
budget, a workspace that is not there), so a bad spec is refused up front with one clear message
rather than failing halfway through a task. The token's value is never part of a message.
"""

from __future__ import annotations

import math
import os
from typing import Any

from agent.gateway import GatewayURL
from agent.wire import AgentTaskSpec, WireError

_STRINGS = ("task_id", "token", "instruction", "model", "workspace", "output", "gateway_socket")
_COUNTS = ("max_steps", "tool_output_limit")
_SECONDS = ("command_timeout_s", "setup_timeout_s")
MIN_TOOL_OUTPUT_LIMIT = 1000


class SpecError(ValueError):
    """The task spec cannot be used; the message says why."""


def parse_spec(line: bytes) -> AgentTaskSpec:
    if not line.strip():
        raise SpecError("no task spec on standard input (expected one line of JSON)")
    try:
        spec = AgentTaskSpec.from_json(line)
    except WireError as exc:
        raise SpecError(str(exc)) from None
    for name in _STRINGS:
        value: Any = getattr(spec, name)
        if not isinstance(value, str) or not value.strip():
            raise SpecError(f"task spec: {name} must be a non-empty string")
    for name in _COUNTS:
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"task spec: {name} must be a positive integer, got {value!r}")
    for name in _SECONDS:
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SpecError(f"task spec: {name} must be a positive number of seconds, got {value!r}")
    if spec.tool_output_limit < MIN_TOOL_OUTPUT_LIMIT:
        raise SpecError(f"task spec: tool_output_limit must be at least {MIN_TOOL_OUTPUT_LIMIT} characters")
    if not all(isinstance(p, str) for p in spec.focus_paths):
        raise SpecError("task spec: focus_paths must be a list of strings")
    if not isinstance(spec.focus_range, str):
        raise SpecError("task spec: focus_range must be a string")
    if not isinstance(spec.gateway_url, str):
        raise SpecError("task spec: gateway_url must be a string")
    if spec.gateway_url:
        try:
            GatewayURL.parse(spec.gateway_url)
        except ValueError as exc:
            raise SpecError(f"task spec: {exc}") from None
    if not os.path.isdir(spec.workspace):
        raise SpecError(f"task spec: workspace {spec.workspace!r} is not a directory")
    return spec
