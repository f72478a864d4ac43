"""`python -m runner.scripted_llm` as a process: logs its URL, serves, stops on a signal."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp
import pytest

pytestmark = pytest.mark.timeout(30)


async def test_module_entry_serves_a_bundled_scenario() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner.scripted_llm", "--scenario", "noop", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        record = json.loads(line)
        assert record["msg"] == "scripted LLM listening"
        url = record["url"]
        async with aiohttp.ClientSession() as http, http.post(
                f"{url}/chat/completions",
                json={"model": "any", "messages": [{"role": "user", "content": "hi"}]}) as response:
            body = await response.json()
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["choices"][0]["message"]["content"]
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert stdout == b""
    assert proc.returncode == 0


async def test_module_entry_refuses_a_bad_scenario(tmp_path: object) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner.scripted_llm", "--scenario", "no-such-scenario",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert stdout == b""
    assert "no bundled scenario" in stderr.decode()
