"""What the agent's sandbox cannot do, seen from inside a real task: no network, no secrets, nothing of
the host outside the workspace; and a cancelled task is gone within seconds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import HOST_SECRET, PROVIDER_KEY, all_text_of, copy_example, read_until_tool_call

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _shell(command: str) -> dict[str, object]:
    return {"tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": command}}]}


def _outputs(events: list[dict[str, object]]) -> list[str]:
    return [str(e["output"]) for e in events if e["kind"] == "tool_call_finished"]


async def test_the_sandbox_sees_no_network_no_secrets_and_no_host_files(short_tmp, provider_factory, codex_factory):
    outside = short_tmp / "outside-secret.txt"
    outside.write_text("OUTSIDE-CONTENT\n")
    probe_net = ("python3 -c \"import socket\ns = socket.socket(); s.settimeout(3)\ntry:\n"
                 "    s.connect(('127.0.0.1', {port})); print('NET-OPEN')\nexcept OSError as e:\n"
                 "    print('NET-BLOCKED', e)\ntry:\n    socket.getaddrinfo('pypi.org', 443); print('DNS-OPEN')\n"
                 "except OSError as e:\n    print('DNS-BLOCKED', e)\"")
    # A server on the host's loopback that the sandbox must not reach.
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    steps = [
        _shell(probe_net.format(port=port)),
        _shell("env; cat /proc/1/environ 2>/dev/null | tr '\\0' '\\n'; echo ENV-DONE"),
        _shell(f"cat {outside} 2>&1; ls -a /root 2>&1; ls {short_tmp} 2>&1; cat /etc/shadow 2>&1; echo FILES-DONE"),
        _shell("touch /usr/evil 2>&1; touch /etc/evil 2>&1; echo WRITE-DONE"),
        {"tool_calls": [{"name": "read_file_content", "arguments": {"file_path": str(outside)}}]},
        {"tool_calls": [{"name": "read_file_content", "arguments": {"file_path": "../../../../etc/passwd"}}]},
        _shell("ln -s / rootlink && echo LINKED"),
        {"tool_calls": [{"name": "read_file_content", "arguments": {"file_path": "rootlink/etc/hostname"}}]},
        {"tool_calls": [{"name": "write_file_content", "arguments": {"file_path": "/tmp/escape.txt", "content": "x"}}]},
    ]
    provider = await provider_factory({"name": "probe", "steps": steps, "final": "Probed."})
    codex = await codex_factory(provider)
    ws = copy_example(short_tmp)
    out = short_tmp / "out"

    async with listener:
        res = await codex.run("run", "--json", "--out", str(out), "Probe the sandbox", cwd=ws)

    assert res.result["status"] == "COMPLETED", res.stderr[-3000:] + codex.runner_log()[-3000:]
    outputs = _outputs(res.events)
    assert len(outputs) == len(steps)
    net, env, files, writes, read_abs, read_up, _link, read_link, write_abs = outputs
    assert "NET-BLOCKED" in net and "NET-OPEN" not in net
    assert "DNS-BLOCKED" in net and "DNS-OPEN" not in net
    assert "ENV-DONE" in env
    assert "OPENAI" not in env and "CODEX_SYS" not in env and HOST_SECRET not in env
    assert "FILES-DONE" in files and "OUTSIDE-CONTENT" not in files and "root:" not in files
    assert "home0" not in files  # the runner's own state folder is not there
    assert "WRITE-DONE" in writes and not Path("/usr/evil").exists() and not Path("/etc/evil").exists()
    for refused in (read_abs, read_up, read_link, write_abs):
        assert "outside the workspace" in refused, refused
    assert not Path("/tmp/escape.txt").exists()
    assert "OUTSIDE-CONTENT" not in read_abs

    # Nothing the task produced carries the provider key or the host's secrets.
    everything = res.stdout + all_text_of(out)
    assert PROVIDER_KEY not in everything and HOST_SECRET not in everything
    # ...while the provider did receive the key, from the gateway.
    assert all(r.header("authorization") == f"Bearer {PROVIDER_KEY}" for r in provider.server.chat_requests)


async def test_cancel_kills_a_running_task_within_seconds(short_tmp, provider_factory, codex_factory):
    provider = await provider_factory({"name": "sleeper", "steps": [_shell("echo SLEEPING; sleep 300")],
                                       "final": "never"})
    codex = await codex_factory(provider)
    ws = copy_example(short_tmp)
    proc = await codex.start("run", "--json", "Sleep", cwd=ws)
    task_id = await read_until_tool_call(proc, codex)
    await asyncio.sleep(0.5)  # the command is running inside the sandbox now
    assert subprocess.run(["pgrep", "-f", "sleep 300"], capture_output=True, check=False).returncode == 0

    started = time.monotonic()
    cancel = await codex.run("cancel", task_id)
    assert cancel.returncode == 0, cancel.stderr
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    elapsed = time.monotonic() - started

    assert rest.strip(), codex.stderr_file.read_text()[-3000:] + codex.runner_log()[-5000:]
    result = json.loads(rest.decode().strip().splitlines()[-1])
    assert result["type"] == "result" and result["status"] == "CANCELLED"
    assert proc.returncode == 1
    assert elapsed < 5, f"cancel took {elapsed:.1f} s"
    assert subprocess.run(["pgrep", "-f", "sleep 300"], capture_output=True, check=False).returncode == 1, \
        "the sandboxed command survived the cancel"
    again = await codex.run("cancel", task_id)
    assert again.returncode == 2 and "already ended" in again.stderr
