"""How a task's progress looks on a terminal: a line per step, and a live status line on a TTY.

With a TTY, rich draws colours and a status line (state, elapsed time, tokens) that stays at the bottom;
without one (a pipe, CI) the same lines are written plainly. `--json` bypasses this module.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from runner.domain import models as m

MAX_OUTPUT_LINES = 6

_STATE_STYLE = {
    m.TaskState.COMPLETED: "bold green",
    m.TaskState.FAILED: "bold red",
    m.TaskState.TIMED_OUT: "bold red",
    m.TaskState.CANCELLED: "bold yellow",
}


def _first_lines(text: str, n: int) -> list[str]:
    lines = text.rstrip("\n").splitlines()
    if len(lines) > n:
        return [*lines[:n], f"… {len(lines) - n} more lines"]
    return lines


class ProgressView:
    def __init__(self, console: Console, task_id: str) -> None:
        self._console = console
        self._task_id = task_id
        self._state = m.TaskState.QUEUED
        self._tokens = 0
        self._started = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self._console.is_terminal:
            self._live = Live(self._status(), console=self._console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(et, ev, tb)
            self._live = None

    def _status(self) -> Spinner:
        elapsed = time.monotonic() - self._started
        text = Text.assemble((f" {self._state.value}", "bold"), f"  task {self._task_id}  {elapsed:5.1f} s",
                             f"  {self._tokens:,} tokens" if self._tokens else "")
        return Spinner("dots", text=text)

    def _print(self, text: Text) -> None:
        self._console.print(text, soft_wrap=False, overflow="fold", highlight=False)
        if self._live is not None:
            self._live.update(self._status())

    def show(self, event: m.Event) -> None:
        p = event.payload
        if isinstance(p, m.StateChanged):
            self._state = p.state
            line = Text.assemble(("● ", _STATE_STYLE.get(p.state, "cyan")), (p.state.value, "bold"))
            if p.reason:
                line.append(f"  {p.reason}", style="dim")
            self._print(line)
        elif isinstance(p, m.ToolCallStarted):
            self._print(Text.assemble("  ", ("▶ ", "cyan"), (p.name, "bold"), "  ", (p.arguments, "")))
        elif isinstance(p, m.ToolCallFinished):
            status = "ok" if p.exit_code is None else f"exit {p.exit_code}"
            mark, style = ("✓", "green") if p.ok else ("✗", "red")
            self._print(Text.assemble("    ", (f"{mark} {status}", style), (f"  {p.duration_s:.2f} s", "dim")))
            for out_line in _first_lines(p.output, MAX_OUTPUT_LINES):
                self._print(Text(f"      {out_line}", style="dim"))
        elif isinstance(p, m.AssistantMessage):
            for i, text_line in enumerate(_first_lines(p.text, 12)):
                self._print(Text.assemble("  ", ("✎ " if i == 0 else "  ", "magenta"), text_line))
        elif isinstance(p, m.LogLine):
            self._print(Text(f"  │ {p.stream}: {p.text.rstrip()}", style="dim"))
        elif isinstance(p, m.TokenUsageEvent):
            self._tokens = p.total.total_tokens
            if self._live is not None:
                self._live.update(self._status())
        elif isinstance(p, m.TaskResult):
            self._state = p.state
            style = _STATE_STYLE.get(p.state, "bold")
            result = Text.assemble(("■ ", style), (p.state.value, style), f"  {p.files_changed} file(s) changed")
            if p.reason:
                result.append(f"  {p.reason}")
            self._print(result)
