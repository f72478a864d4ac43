"""Per-task budgets: how much of the LLM one task may use, and the rate at which it may ask.

A `Budget` is fixed when the task's gateway session opens. The `BudgetMeter` admits or refuses each
request before it is forwarded:

- requests: at most `max_requests` forwarded requests (refused ones do not count);
- tokens: no new request once prompt + completion tokens, as the provider reported them, reach
  `max_tokens` (a request already admitted may overshoot; the budget bounds what is *started*);
- wall time: no new request `wall_time_s` after the session opened, and a request in flight is cut
  at that moment;
- rate: a token bucket of `requests_per_second`, with a burst of max(1, requests_per_second).

Running out of requests, tokens or wall time is final: the refusal has type `budget_exceeded`, the
first such message becomes the session's `budget_exceeded` reason, and the agent is expected to stop
and report it. Going over the rate is not final: the refusal has type `rate_limit_exceeded` and says
when to retry, as OpenAI's own rate limits do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from runner.domain.models import TaskLimits, TokenUsage

BUDGET_EXCEEDED = "budget_exceeded"
RATE_LIMITED = "rate_limit_exceeded"


@dataclass(frozen=True, slots=True)
class Budget:
    max_requests: int = 100
    max_tokens: int = 2_000_000
    wall_time_s: float = 1800.0
    requests_per_second: float = 5.0

    def __post_init__(self) -> None:
        if self.max_requests < 1 or self.max_tokens < 1:
            raise ValueError(f"budget needs at least one request and one token, got {self}")
        if not (self.wall_time_s > 0 and math.isfinite(self.wall_time_s)):
            raise ValueError(f"budget wall time must be a positive number of seconds, got {self.wall_time_s}")
        if not (self.requests_per_second > 0 and math.isfinite(self.requests_per_second)):
            raise ValueError(f"budget rate must be a positive number per second, got {self.requests_per_second}")

    @classmethod
    def from_limits(cls, limits: TaskLimits, requests_per_second: float = 5.0) -> Budget:
        return cls(max_requests=limits.max_llm_requests, max_tokens=limits.max_llm_tokens,
                   wall_time_s=limits.wall_time_s, requests_per_second=requests_per_second)


@dataclass(frozen=True, slots=True)
class Refusal:
    message: str
    type: str  # BUDGET_EXCEEDED or RATE_LIMITED
    retry_after_s: float | None = None


class BudgetMeter:
    """The running account of one session against its budget. Not thread-safe; one event loop."""

    def __init__(self, budget: Budget, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self.opened_at = clock()
        self.admitted = 0
        self.refused = 0
        self.usage = TokenUsage()
        self.exceeded: str | None = None
        self._bucket = self._burst = max(1.0, budget.requests_per_second)
        self._bucket_at = self.opened_at

    def elapsed_s(self) -> float:
        return self._clock() - self.opened_at

    def remaining_s(self) -> float:
        return self.budget.wall_time_s - self.elapsed_s()

    def wall_time_refusal(self, in_flight: bool = False) -> Refusal:
        """The wall time is up; `in_flight` when it cut a request already admitted (not a refusal)."""
        return self._exhausted(f"wall-time budget exhausted: {self.elapsed_s():.1f} s of "
                               f"{self.budget.wall_time_s:g} s elapsed since the task started",
                               refused=not in_flight)

    def admit(self) -> Refusal | None:
        """Count the request in, or say why it may not go out."""
        b = self.budget
        if self.remaining_s() <= 0:
            return self.wall_time_refusal()
        if self.admitted >= b.max_requests:
            return self._exhausted(f"request budget exhausted: {self.admitted} of {b.max_requests} "
                                   "LLM requests used")
        if self.usage.total_tokens >= b.max_tokens:
            u = self.usage
            return self._exhausted(f"token budget exhausted: {u.total_tokens} of {b.max_tokens} tokens used "
                                   f"({u.prompt_tokens} prompt + {u.completion_tokens} completion)")
        now = self._clock()
        self._bucket = min(self._burst, self._bucket + (now - self._bucket_at) * b.requests_per_second)
        self._bucket_at = now
        if self._bucket < 1.0:
            self.refused += 1
            wait = (1.0 - self._bucket) / b.requests_per_second
            return Refusal(f"rate limit: at most {b.requests_per_second:g} LLM requests per second per task; "
                           f"retry in {wait:.2f} s", RATE_LIMITED, wait)
        self._bucket -= 1.0
        self.admitted += 1
        return None

    def record(self, usage: TokenUsage) -> TokenUsage:
        """Add one response's usage; returns the running total."""
        self.usage = self.usage + usage
        return self.usage

    def _exhausted(self, message: str, refused: bool = True) -> Refusal:
        if refused:
            self.refused += 1
        if self.exceeded is None:
            self.exceeded = message
        return Refusal(message, BUDGET_EXCEEDED)
