"""What a person sees when something is wrong: a message naming what to fix, never a stack trace; and a
shared runner over TCP with a bearer token."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import CODEX, codex_env
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from runner.client.connection import is_serving

from .conftest import write_tree

HELLO: dict[str, Any] = {"name": "hello", "steps": [{"content": "Writing.", "tool_calls": [
    {"name": "write_file_content", "arguments": {"file_path": "hello.txt", "content": "hi\n"}}]}]}


async def failing(editor: Any, *args: Any) -> str:
    with pytest.raises(JsonRpcException) as err:
        await editor.command("codexSys.runTask", *args)
    shown = await editor.wait_for(lambda: [m.message for m in editor.client.messages if m.type.value == 1],
                                  "an error shown with window/showMessage")
    assert str(err.value.args[0] if err.value.args else err.value) and "Traceback" not in shown[-1]
    return str(shown[-1])


@pytest.mark.parametrize("args", [[{"instruction": "   "}], [], [{"instruction": 42}]])
async def test_a_blank_instruction_is_refused(lsp_factory: Any, short_tmp: Path, args: list[Any]) -> None:
    editor = await lsp_factory("neovim", None, [write_tree(short_tmp / "p", {"a.txt": "a\n"})])
    assert "the instruction is empty" in await failing(editor, *args)
    assert editor.progress_of() == []


async def test_an_unreachable_runner_names_the_setting(lsp_factory: Any, short_tmp: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # closed when the block ends: nothing listens there
    editor = await lsp_factory("vscode", None, [write_tree(short_tmp / "p", {"a.txt": "a\n"})],
                               init_options={"runner": {"address": dead}})
    message = await failing(editor, {"instruction": "do it"})
    assert f"cannot reach the runner at {dead}" in message and "codexSys.runner.address" in message


async def test_a_workspace_over_the_limit_names_the_biggest_folder_and_the_setting(lsp_factory: Any,
                                                                                  short_tmp: Path) -> None:
    files = {f"node_modules/pkg/f{i}.js": "x\n" for i in range(8)} | {"app.py": "a\n"}
    editor = await lsp_factory("vscode", None, [write_tree(short_tmp / "p", files)],
                               configuration={"snapshot": {"maxFiles": 5}})
    message = await failing(editor, {"instruction": "do it"})
    assert "more than 5 files" in message and "node_modules" in message
    assert "codexSys.snapshot.maxFiles" in message


async def test_an_invalid_setting_is_named_and_its_default_kept(lsp_factory: Any, short_tmp: Path) -> None:
    root = write_tree(short_tmp / "p", {"a.txt": "a\n"})
    editor = await lsp_factory("vscode", HELLO, [root], configuration={"snapshot": {"maxFiles": "lots"}})
    started = await editor.command("codexSys.runTask", {"instruction": "write hello"})
    warnings = [m.message for m in editor.client.messages if m.type.value == 2]
    assert any("codexSys.snapshot.maxFiles must be a positive whole number" in w for w in warnings), warnings
    await editor.wait_for(editor.progress_ended, "the task to end")
    result = await editor.command("codexSys.applyTask", {"taskId": started["taskId"]})
    assert result == {"applied": ["1"], "skipped": []}


async def test_an_unknown_task_or_a_task_still_running(lsp_factory: Any, short_tmp: Path) -> None:
    root = write_tree(short_tmp / "p", {"a.txt": "a\n"})
    slow = {"name": "slow", "steps": [{"content": "Thinking.", "delay_s": 20}]}
    editor = await lsp_factory("vscode", slow, [root])
    with pytest.raises(JsonRpcException):
        await editor.command("codexSys.applyTask", {"taskId": "t0000000000000000"})
    assert any("no task t0000000000000000" in m.message or "not found" in m.message.lower()
               for m in editor.client.messages), [m.message for m in editor.client.messages]
    with pytest.raises(JsonRpcException):
        await editor.command("codexSys.applyTask", {"taskId": "not-an-id"})
    started = await editor.command("codexSys.runTask", {"instruction": "think"})
    with pytest.raises(JsonRpcException):
        await editor.command("codexSys.applyTask", {"taskId": started["taskId"]})
    assert any("has no changes to apply: it is" in m.message for m in editor.client.messages)
    await editor.command("codexSys.cancelTask", {"taskId": started["taskId"]})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_shared_runner_over_tcp_with_a_token(lsp_factory: Any, provider_factory: Any, short_tmp: Path) -> None:
    provider = await provider_factory(HELLO)
    home = short_tmp / "shared"
    env = codex_env(home, provider)
    tokens = short_tmp / "tokens"
    tokens.write_text("s3cret-token-for-team team\n")
    address = f"127.0.0.1:{_free_port()}"
    runner = subprocess.Popen([CODEX, "runner", "serve", "--embedded", "--listen", address,
                               "--token-file", str(tokens)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with asyncio.timeout(30):
            while not await is_serving(f"unix:{home}/runner.sock"):
                await asyncio.sleep(0.1)
        root = write_tree(short_tmp / "p", {"a.txt": "a\n"})
        wrong = await lsp_factory("vscode", None, [root], provider=provider,
                                  init_options={"runner": {"address": address, "token": "nope"}})
        message = await failing(wrong, {"instruction": "write hello"})
        assert "refused the token" in message and "codexSys.runner.token" in message and "nope" not in message

        right = await lsp_factory("neovim", None, [root], provider=provider,
                                  init_options={"runner": {"address": address, "token": "s3cret-token-for-team"}})
        started = await right.command("codexSys.runTask", {"instruction": "write hello"})
        await right.wait_for(right.progress_ended, "the task to end")
        assert (await right.command("codexSys.applyTask", {"taskId": started["taskId"]}))["applied"] == ["1"]
        assert right.text("hello.txt") == "hi\n"
    finally:
        runner.terminate()
        await asyncio.to_thread(runner.wait, 30)


async def test_settings_from_initialization_options_are_checked_and_replaced_by_later_ones(
        lsp_factory: Any, provider_factory: Any, short_tmp: Path) -> None:
    # Neovim 0.7 does not advertise workspace/configuration: initializationOptions and
    # didChangeConfiguration are all the server gets.
    provider = await provider_factory(HELLO)
    root = write_tree(short_tmp / "p", {"a.txt": "a\n"})
    editor = await lsp_factory("neovim", None, [root], provider=provider,
                               init_options={"model": "model-one", "snapshot": {"maxFiles": 0}})

    async def model_of_next_task() -> str:
        before = len(provider.server.chat_requests)
        tasks = len(editor.progress_of())
        await editor.command("codexSys.runTask", {"instruction": "write hello"})
        await editor.wait_for(lambda: len(editor.progress_ended()) == tasks + 1, "the task to end")
        return str(provider.server.chat_requests[before].body["model"])

    assert await model_of_next_task() == "model-one"
    warnings = [m.message for m in editor.client.messages if m.type.value == 2]
    assert any("codexSys.snapshot.maxFiles must be a positive whole number" in w for w in warnings), warnings

    editor.client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(
        settings={"codexSys": {"model": "model-two"}}))
    assert await model_of_next_task() == "model-two"
    editor.client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"codexSys": {}}))
    assert await model_of_next_task() == "scripted-e2e"  # removed: the runner's default (CODEX_SYS_MODEL)
