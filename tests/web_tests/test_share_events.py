"""Share links that expire, and the events route: replay after Last-Event-ID, then live, then the end."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from .conftest import TOKEN_A, Site

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]


async def _sse(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> list[dict[str, object]]:
    """Every `task` event of a stream until the server ends it."""
    events = []
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "text/event-stream"
        block: dict[str, str] = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line:
                name, _, value = line.partition(": ")
                block[name] = value
                continue
            if block.get("event") == "task":
                data = json.loads(block["data"])
                assert int(block["id"]) == data["seq"]
                events.append(data)
            block = {}
    return events


async def test_share_link_expires(site: Site, http: aiohttp.ClientSession) -> None:
    async with site.client(TOKEN_A) as client:
        url, expires_at = await client.page_link(site.task_a.id, 2)
    async with http.get(url) as resp:
        assert resp.status == 200
        assert site.task_a.id in await resp.text()
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.2)
    for suffix in ("", "/events", "/artifacts/diff.patch"):
        async with http.get(url + suffix) as resp:
            assert resp.status == 410
            assert "expired at" in await resp.text()


async def test_events_replay_after_last_event_id(site: Site, http: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"Bearer {TOKEN_A}"}
    url = f"{site.url}/tasks/{site.task_a.id}/events"
    everything = await _sse(http, url, headers)
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert everything[-1]["final"] and everything[-1]["state"] == "COMPLETED"
    later = await _sse(http, url, {**headers, "Last-Event-ID": "3"})
    assert later == everything[3:]
    async with http.get(url, headers={**headers, "Last-Event-ID": str(everything[-1]["seq"])}) as resp:
        assert resp.status == 204  # nothing after the result: EventSource stops reconnecting


async def test_events_follow_a_running_task_live(site: Site, http: aiohttp.ClientSession) -> None:
    task = await site.submit(TOKEN_A, model="page-slow")
    started = time.monotonic()
    events = await _sse(http, f"{site.url}/tasks/{task.id}/events", {"Authorization": f"Bearer {TOKEN_A}"})
    assert time.monotonic() - started > 2  # the stream stayed open while the task ran
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [e["kind"] for e in events]
    assert "tool" in kinds and "tool-ok" in kinds and kinds[-1] == "result"
    assert 'class="ev ev-tool"' in str(events[kinds.index("tool")]["html"])
