"""Who may use the gateway: per-task tokens, their end, and the socket itself."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from runner.gateway import Budget, Gateway

pytestmark = pytest.mark.timeout(20)

MESSAGES = [{"role": "user", "content": "hello"}]


async def _post_chat(http: aiohttp.ClientSession, headers: dict[str, str]) -> tuple[int, Any]:
    async with http.post("http://localhost/v1/chat/completions", json={"model": "m", "messages": MESSAGES},
                         headers=headers) as response:
        return response.status, await response.json()


async def test_missing_bad_and_closed_tokens_get_401(
        gateway: Gateway, raw: Callable[[Gateway], aiohttp.ClientSession]) -> None:
    http = raw(gateway)
    token = gateway.open_session("task-1", "alice", Budget())
    cases = [({}, "missing bearer token"), ({"Authorization": "Basic abc"}, "missing bearer token"),
             ({"Authorization": "Bearer " + token[:-2] + "xx"}, "invalid or expired"),
             ({"Authorization": "Bearer "}, "missing bearer token")]
    for headers, fragment in cases:
        status, body = await _post_chat(http, headers)
        assert status == 401, headers
        assert fragment in body["error"]["message"]
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "invalid_api_key"
    status, _ = await _post_chat(http, {"Authorization": f"Bearer {token}"})
    assert status == 200
    await gateway.close_session("task-1")
    for path, method in (("/v1/chat/completions", "POST"), ("/v1/agent/events", "POST"), ("/v1/models", "GET")):
        async with http.request(method, f"http://localhost{path}", json={"events": []},
                                headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 401, path
            assert "invalid or expired" in (await response.json())["error"]["message"]


async def test_tokens_are_per_task(gateway: Gateway, raw: Callable[[Gateway], aiohttp.ClientSession]) -> None:
    http = raw(gateway)
    first = gateway.open_session("task-a", "alice", Budget())
    second = gateway.open_session("task-b", "bob", Budget())
    assert first != second
    assert len(first) >= 40
    await gateway.close_session("task-a")
    assert (await _post_chat(http, {"Authorization": f"Bearer {first}"}))[0] == 401
    assert (await _post_chat(http, {"Authorization": f"Bearer {second}"}))[0] == 200
    report = await gateway.close_session("task-b")
    assert report.tenant == "bob"
    assert report.usage.requests == 1


async def test_session_misuse_is_refused(gateway: Gateway) -> None:
    gateway.open_session("task-1", "alice", Budget())
    with pytest.raises(AlreadyExists):
        gateway.open_session("task-1", "alice", Budget())
    for bad in ("", "../etc", "a/b", ".hidden", "x" * 200):
        with pytest.raises(InvalidArgument):
            gateway.open_session(bad, "alice", Budget())
    await gateway.close_session("task-1")
    with pytest.raises(NotFound):
        await gateway.close_session("task-1")
    with pytest.raises(ValueError, match="wall time"):
        Budget(wall_time_s=0)


async def test_health_needs_no_token(gateway: Gateway, raw: Callable[[Gateway], aiohttp.ClientSession]) -> None:
    async with raw(gateway).get("http://localhost/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def test_socket_is_private(gateway: Gateway) -> None:
    mode = os.stat(gateway.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert not [p for p in gateway.socket_path.parent.iterdir() if p.name.endswith(".sock")
                and p != gateway.socket_path]


async def test_stale_socket_is_replaced_live_one_and_files_are_not(
        make_gateway: Callable[..., Any], short_dir: Path) -> None:
    stale = short_dir / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()  # the file stays, nobody listens: what a crashed runner leaves
    gateway = await make_gateway("http://127.0.0.1:9/v1", name="stale.sock")
    assert stat.S_IMODE(os.stat(stale).st_mode) == 0o600
    # A second gateway on the same, live, socket is refused.
    with pytest.raises(FailedPrecondition, match="already serving"):
        await make_gateway("http://127.0.0.1:9/v1", name="stale.sock")
    assert stat.S_ISSOCK(os.stat(gateway.socket_path).st_mode)
    (short_dir / "file.sock").write_text("not a socket")
    with pytest.raises(FailedPrecondition, match="not a socket"):
        await make_gateway("http://127.0.0.1:9/v1", name="file.sock")
    assert (short_dir / "file.sock").read_text() == "not a socket"
    await gateway.close()
    assert not stale.exists()


async def test_closing_removes_the_socket(make_gateway: Callable[..., Any]) -> None:
    gateway = await make_gateway("http://127.0.0.1:9/v1")
    await gateway.close()
    assert not gateway.socket_path.exists()
    with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        await asyncio.open_unix_connection(str(gateway.socket_path))
