"""The runner's gateway: the one way out of a sandbox.

An OpenAI-compatible LLM proxy that holds the provider key, enforces per-task budgets, rate limits and
writes the transcript itself, plus the sink for the agent's progress events. See `server` for the
routes and lifecycle, `chat` for forwarding, `budget`, `transcript`, `events`, `listener`.
"""

from runner.gateway.budget import Budget, Refusal
from runner.gateway.provider import ProviderOptions
from runner.gateway.server import AGENT_BASE_URL, Gateway, GatewayOptions
from runner.gateway.session import SessionReport
from runner.gateway.sink import AgentEventSink

__all__ = [
    "AGENT_BASE_URL",
    "AgentEventSink",
    "Budget",
    "Gateway",
    "GatewayOptions",
    "ProviderOptions",
    "Refusal",
    "SessionReport",
]
