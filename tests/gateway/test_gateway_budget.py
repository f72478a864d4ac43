"""Per-task budgets and the rate limit, through the real gateway and on the meter alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from runner.domain.models import TaskLimits, TokenUsage
from runner.gateway import Budget, Gateway
from runner.gateway.budget import BUDGET_EXCEEDED, RATE_LIMITED, BudgetMeter
from runner.scripted_llm import Scenario, ScriptedLLMServer

pytestmark = pytest.mark.timeout(20)

Raw = Callable[[Gateway], aiohttp.ClientSession]
BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


async def _post(http: aiohttp.ClientSession, token: str, stream: bool = False) -> tuple[int, Any, Any]:
    async with http.post("http://localhost/v1/chat/completions", json={**BODY, "stream": stream},
                         headers={"Authorization": f"Bearer {token}"}) as response:
        text = await response.text()
        body = json.loads(text) if response.content_type == "application/json" else text
        return response.status, body, response.headers


async def test_request_budget(gateway: Gateway, raw: Raw) -> None:
    token = gateway.open_session("task-1", "alice", Budget(max_requests=2, requests_per_second=100))
    http = raw(gateway)
    assert (await _post(http, token))[0] == 200
    assert (await _post(http, token, stream=True))[0] == 200
    status, body, headers = await _post(http, token)
    assert status == 429
    assert body["error"]["type"] == BUDGET_EXCEEDED
    assert body["error"]["message"] == "request budget exhausted: 2 of 2 LLM requests used"
    assert headers["x-should-retry"] == "false"
    report = await gateway.close_session("task-1")
    assert report.budget_exceeded == "request budget exhausted: 2 of 2 LLM requests used"
    assert report.usage.requests == 2
    assert report.requests_refused == 1
    assert b"429" in report.transcript and b"refused by the gateway" in report.transcript


async def test_token_budget(gateway: Gateway, raw: Raw) -> None:
    token = gateway.open_session("task-1", "alice", Budget(max_tokens=20, requests_per_second=100))
    http = raw(gateway)
    status, first, _ = await _post(http, token)
    assert status == 200
    used = first["usage"]
    assert used["total_tokens"] >= 20
    status, body, _ = await _post(http, token)
    assert status == 429
    assert body["error"]["message"] == (
        f"token budget exhausted: {used['total_tokens']} of 20 tokens used "
        f"({used['prompt_tokens']} prompt + {used['completion_tokens']} completion)")
    report = await gateway.close_session("task-1")
    assert report.budget_exceeded is not None and report.budget_exceeded.startswith("token budget exhausted")


async def test_wall_time_budget_when_idle(gateway: Gateway, raw: Raw) -> None:
    token = gateway.open_session("task-1", "alice", Budget(wall_time_s=0.2))
    http = raw(gateway)
    await asyncio.sleep(0.3)
    status, body, _ = await _post(http, token)
    assert status == 429
    assert body["error"]["type"] == BUDGET_EXCEEDED
    message = body["error"]["message"]
    assert message.startswith("wall-time budget exhausted: ")
    assert "of 0.2 s elapsed" in message


async def test_wall_time_budget_cuts_a_request_in_flight(make_gateway: Callable[..., Any], raw: Raw,
                                                         provider_key: str) -> None:
    slow = ScriptedLLMServer(Scenario.from_dict({"name": "slow", "steps": [{"content": "late", "delay_s": 10}]}),
                             api_key=provider_key)
    try:
        gateway = await make_gateway(await slow.start_tcp())
        token = gateway.open_session("task-1", "alice", Budget(wall_time_s=0.3))
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, body, _ = await _post(raw(gateway), token)
        assert loop.time() - started < 5
        assert status == 429
        assert body["error"]["message"].startswith("wall-time budget exhausted")
        report = await gateway.close_session("task-1")
        assert report.budget_exceeded is not None and "wall-time" in report.budget_exceeded
        assert b"wall-time budget exhausted" in report.transcript
    finally:
        await slow.close()


async def test_rate_limit_says_when_to_retry(gateway: Gateway, raw: Raw) -> None:
    token = gateway.open_session("task-1", "alice", Budget(requests_per_second=1))
    http = raw(gateway)
    assert (await _post(http, token))[0] == 200
    status, body, headers = await _post(http, token)
    assert status == 429
    assert body["error"]["type"] == RATE_LIMITED
    assert "at most 1 LLM requests per second" in body["error"]["message"]
    assert 0 < int(headers["retry-after-ms"]) <= 1000
    assert headers["retry-after"] == "1"
    await asyncio.sleep(int(headers["retry-after-ms"]) / 1000 + 0.05)
    assert (await _post(http, token))[0] == 200
    report = await gateway.close_session("task-1")
    assert report.budget_exceeded is None  # a rate limit is not the end of the task
    assert report.requests_refused == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_meter_accounting() -> None:
    clock = FakeClock()
    meter = BudgetMeter(Budget(max_requests=3, max_tokens=100, wall_time_s=60, requests_per_second=2), clock)
    assert meter.admit() is None
    assert meter.admit() is None  # burst of 2
    refusal = meter.admit()
    assert refusal is not None and refusal.type == RATE_LIMITED
    assert refusal.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    assert meter.admit() is None
    clock.now += 10
    refusal = meter.admit()
    assert refusal is not None and refusal.message == "request budget exhausted: 3 of 3 LLM requests used"
    assert meter.record(TokenUsage(60, 50, 1)) == TokenUsage(60, 50, 1)
    clock.now += 60
    refusal = meter.admit()
    assert refusal is not None and refusal.message.startswith("wall-time budget exhausted: 70.5 s of 60 s")
    # The first reason is the one the report keeps.
    assert meter.exceeded == "request budget exhausted: 3 of 3 LLM requests used"
    assert meter.refused == 3


def test_budget_from_task_limits() -> None:
    limits = TaskLimits(wall_time_s=600, max_llm_requests=7, max_llm_tokens=1234)
    assert Budget.from_limits(limits, requests_per_second=3) == Budget(7, 1234, 600, 3)
