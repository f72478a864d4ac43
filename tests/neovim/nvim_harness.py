"""A real Neovim (headless, `--clean`, the plugin from editors/neovim on its runtimepath) driven over
its msgpack-RPC socket with pynvim, and a scripted OpenAI-compatible provider served from a thread
(pynvim runs its own asyncio loop in the test's thread, so the tests themselves are synchronous); the
provider's record of requests shows what reached the model (the agent's prompt, the model asked for)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pynvim

from runner.scripted_llm import Scenario, ScriptedLLMServer
from runner.scripted_llm.completions import prompt_texts

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "editors" / "neovim"
SHIM = Path(__file__).resolve().parent / "shim.lua"
FAKE_LSP = Path(__file__).resolve().parent / "fake_lsp.py"
CODEX = str(Path(sys.executable).parent / "codex-sys")
PROVIDER_KEY = "sk-test-provider-key-nvim-5c1e"


class ThreadedProvider:
    """A ScriptedLLMServer on 127.0.0.1:<free port>, its asyncio loop in a daemon thread."""

    def __init__(self, scenarios: Mapping[str, Scenario], default: Scenario | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="scripted-llm", daemon=True)
        self.thread.start()
        # Closing cancels answers still delayed by their step at once (a cancelled task's, say).
        self.server = ScriptedLLMServer(scenarios=scenarios, default=default, api_key=PROVIDER_KEY,
                                        shutdown_timeout_s=0.1)
        self.base_url = self._call(self.server.start_tcp("127.0.0.1", 0))

    def _call(self, coro: Any, timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def conversation(self, instruction: str) -> list[dict[str, Any]]:
        """The JSON bodies of the chat requests of the task whose instruction is `instruction`, in order."""
        out = []
        for request in self.server.chat_requests:
            messages = request.body.get("messages") if isinstance(request.body, dict) else None
            users = [m.get("content") for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
            if users[:1] == [instruction]:
                out.append(request.body)
        return out

    def prompt(self, instruction: str, turn: int = 0) -> str:
        """Every text of the `turn`-th request of that task's conversation (system prompt, instruction, tool
        results so far)."""
        bodies = self.conversation(instruction)
        assert len(bodies) > turn, f"the model got {len(bodies)} request(s) for {instruction!r}"
        return "\n".join(prompt_texts(bodies[turn]["messages"]))

    def tool_results(self, instruction: str) -> list[str]:
        """What that task's tool calls returned to the model, in order."""
        bodies = self.conversation(instruction)
        messages = bodies[-1]["messages"] if bodies else []
        return [m["content"] for m in messages if m.get("role") == "tool"]

    def models(self, instruction: str) -> set[str]:
        """The models that task asked for."""
        return {body["model"] for body in self.conversation(instruction)}

    async def _close(self) -> None:
        await self.server.close()
        # What closing cancelled (answers still delayed by their step) ends before the loop stops.
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def close(self) -> None:
        try:
            self._call(self._close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class Editor:
    """One Neovim process under test."""

    def __init__(self, folder: Path, env: Mapping[str, str], cwd: Path) -> None:
        self.folder = folder
        self.socket = folder / "nvim.sock"
        self.output = folder / "nvim-output.txt"
        self.extra_logs: list[Callable[[], str]] = []
        self.setup_base: dict[str, Any] = {}  # options every setup() call gets (the server's cmd)
        self.provider: ThreadedProvider | None = None  # the scripted model behind the real server, if any
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                ["nvim", "--headless", "--clean", "-n", "--listen", str(self.socket),
                 "--cmd", f"set runtimepath^={PLUGIN}"],
                cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nvim did not start: {self.output.read_text(errors='replace')}")
            time.sleep(0.01)
        self.nvim = pynvim.attach("socket", path=str(self.socket))
        self.nvim.command(f"luafile {SHIM}")

    # ---- plumbing ---------------------------------------------------------------------------------------

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def cmd(self, command: str) -> None:
        self.nvim.command(command)

    def wait(self, code: str, *args: Any, timeout: float = 30, what: str = "") -> Any:
        """Polls the Lua chunk `code` (which returns a value) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.lua(code, *args)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what or code!r}; last value {value!r}\n"
                             + self.report())

    def report(self) -> str:
        """What helps to understand a failure: messages, notifications, logs."""
        parts = []
        try:
            parts.append("nvim :messages:\n" + self.messages())
            parts.append("notifications:\n" + "\n".join(n["msg"] for n in self.notifications()))
        except Exception as exc:  # the editor may be gone
            parts.append(f"(editor unreachable: {exc})")
        lsp_log = self.folder / "xdg-state" / "nvim" / "lsp.log"
        for candidate in (lsp_log, self.folder / "xdg-cache" / "nvim" / "lsp.log"):
            if candidate.exists():
                parts.append("lsp.log (tail):\n" + candidate.read_text(errors="replace")[-6000:])
        parts.append("nvim output:\n" + self.output.read_text(errors="replace")[-2000:])
        parts.extend(extra() for extra in self.extra_logs)
        return "\n\n".join(parts)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.nvim.command("qa!", async_=True)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Let pynvim's loop see the end of the connection, so its transport closes before the loop does.
        loop = self.nvim.loop
        if not loop.is_closed():
            stop = loop.call_later(2, loop.stop)
            loop.run_forever()
            stop.cancel()
        self.nvim.close()

    # ---- what a person sees -----------------------------------------------------------------------------

    def messages(self) -> str:
        return str(self.lua("return codex_test.messages()"))

    def notifications(self) -> list[dict[str, Any]]:
        return list(self.lua("return codex_test.notifications"))

    def lines(self, path: Path) -> list[str]:
        return list(self.lua("return codex_test.lines(...)", str(path)))

    def text(self, path: Path) -> str:
        return "\n".join(self.lines(path)) + "\n"

    def diagnostics(self, path: Path) -> list[dict[str, Any]]:
        return list(self.lua("return codex_test.diagnostics(...)", str(path)))

    def wait_diagnostics(self, path: Path, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        self.wait("return #codex_test.diagnostics(...) == select(2, ...)", str(path), count, timeout=timeout,
                  what=f"{count} diagnostic(s) on {path.name}")
        return self.diagnostics(path)

    def open(self, path: Path) -> int:
        self.cmd(f"edit {path}")
        return int(self.lua("return vim.api.nvim_get_current_buf()"))

    def setup(self, **options: Any) -> None:
        """require('codex_sys').setup() with `setup_base` and `options` (a later call replaces every option)."""
        self.lua("require('codex_sys').setup(...)", self.setup_base | options)

    def exec_sync(self, command: str, argument: Any = None, timeout_ms: int = 20000) -> dict[str, Any]:
        return dict(self.lua("return codex_test.exec_sync(...)", command, argument, timeout_ms))

    def results(self, command: str | None = None) -> list[dict[str, Any]]:
        return list(self.lua("return codex_test.results(...)", command))

    def wait_result(self, command: str, count: int = 1, timeout: float = 30) -> dict[str, Any]:
        """The `count`-th result of `command` the plugin reported."""
        self.wait("return #codex_test.results(...) >= select(2, ...)", command, count, timeout=timeout,
                  what=f"result #{count} of {command}")
        return self.results(command)[count - 1]

    def run_task(self, command: str, count: int = 1) -> str:
        """Runs `command` (a :CodexRun) and returns the id of the task started, the `count`-th one."""
        self.cmd(command)
        result = self.wait_result("codexSys.runTask", count, timeout=60)
        assert not result.get("error"), result
        return str(result["result"]["taskId"])

    def tasks(self) -> list[dict[str, Any]]:
        """codexSys.listTasks through the client of the current buffer."""
        got = self.exec_sync("codexSys.listTasks")
        assert not got.get("error"), got
        return list(got["result"]["tasks"])

    def wait_state(self, task_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
        code = """
            local got = codex_test.exec_sync('codexSys.listTasks')
            for _, t in ipairs(got.result and got.result.tasks or {}) do
              if t.taskId == select(1, ...) and t.state == select(2, ...) then return t end
            end
            return nil"""
        return dict(self.wait(code, task_id, state, timeout=timeout, what=f"task {task_id} {state}"))

    def code_action(self, path: Path, line: int, choose: str | None) -> list[dict[str, Any]]:
        """Puts the cursor on `line` (0-based) of `path`, runs vim.lsp.buf.code_action() and picks the
        action whose title matches the Lua pattern `choose` (None: cancel the menu). Returns the actions
        offered."""
        self.cmd(f"buffer {self.lua('return codex_test.bufnr(...)', str(path))}")
        self.lua("vim.api.nvim_win_set_cursor(0, {select(1, ...) + 1, 0})", line)
        before = int(self.lua("return #codex_test.selects"))
        self.lua("codex_test.choose = ...; vim.lsp.buf.code_action()", choose)
        self.wait("return #codex_test.selects > select(1, ...)", before, timeout=20, what="the code action menu")
        return list(self.lua("return codex_test.last_code_actions()"))


def project(root: Path, files: dict[str, str]) -> Path:
    """A git repository at `root` holding `files` (path -> text)."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """A tool call of a scripted model's step."""
    return {"name": name, "arguments": arguments}


def lines(text: str) -> list[str]:
    """The lines of `text` as a buffer holds them."""
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def base_env(folder: Path) -> dict[str, str]:
    """The editor's environment: the test's, minus any codex-sys or provider settings, with private XDG
    folders (the LSP log lands in the folder)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_SYS_", "NVIM", "VIM"))}
    for name in ("CONFIG", "DATA", "STATE", "CACHE"):
        path = folder / f"xdg-{name.lower()}"
        path.mkdir(parents=True, exist_ok=True)
        env[f"XDG_{name}_HOME"] = str(path)
    return env
