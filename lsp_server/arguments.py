"""The arguments of the `codexSys.*` commands, checked: each error names the argument and what it needs.

Commands take one JSON object (`arguments[0]`); VS Code's palette sends no arguments at all, which is
an error only where something is required.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.domain.errors import InvalidArgument
from runner.tasks.ids import check_task_id

__all__ = ["RunArgs", "TaskArgs", "run_args", "task_args"]

MAX_INSTRUCTION_CHARS = 100_000


def _object(args: Sequence[Any], command: str) -> dict[str, Any]:
    if not args:
        return {}
    if len(args) > 1 or not isinstance(args[0], dict):
        raise InvalidArgument(f"{command} takes one object argument, as in docs/lsp.md")
    return args[0]


@dataclass(frozen=True)
class LineRange:
    start: int  # 0-based lines, inclusive
    end: int


@dataclass(frozen=True)
class RunArgs:
    instruction: str
    uris: tuple[str, ...]
    range: LineRange | None
    folder: str | None


def _line_range(raw: Any) -> LineRange:
    try:
        start, end = raw["start"], raw["end"]
        s_line, e_line, e_char = int(start["line"]), int(end["line"]), int(end["character"])
    except (TypeError, KeyError, ValueError) as exc:
        raise InvalidArgument("codexSys.runTask: range must be an LSP Range "
                              "{start: {line, character}, end: {line, character}}") from exc
    if s_line < 0 or e_line < s_line:
        raise InvalidArgument(f"codexSys.runTask: range ends (line {e_line}) before it starts (line {s_line})")
    if e_char == 0 and e_line > s_line:  # a selection of whole lines ends at the start of the next one
        e_line -= 1
    return LineRange(s_line, e_line)


def run_args(args: Sequence[Any]) -> RunArgs:
    obj = _object(args, "codexSys.runTask")
    instruction = obj.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise InvalidArgument("the instruction is empty: say what the agent should do")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise InvalidArgument(f"the instruction is {len(instruction):,} characters long; the limit is "
                              f"{MAX_INSTRUCTION_CHARS:,}")
    uris = obj.get("uris") or []
    if not isinstance(uris, list) or not all(isinstance(u, str) and u for u in uris):
        raise InvalidArgument("codexSys.runTask: uris must be a list of document URIs")
    folder = obj.get("folder")
    if folder is not None and not isinstance(folder, str):
        raise InvalidArgument("codexSys.runTask: folder must be a workspace folder URI")
    rng = obj.get("range")
    if rng is not None and not uris:
        raise InvalidArgument("codexSys.runTask: a range needs the document it is in (uris[0])")
    return RunArgs(instruction.strip(), tuple(uris), _line_range(rng) if rng is not None else None, folder or None)


@dataclass(frozen=True)
class TaskArgs:
    task_id: str | None  # None: the newest task
    hunks: tuple[str, ...] | None
    folder: str | None


def task_args(args: Sequence[Any], command: str, allow_hunks: bool = False) -> TaskArgs:
    obj = _object(args, command)
    task_id = obj.get("taskId")
    if task_id is not None:
        if not isinstance(task_id, str):
            raise InvalidArgument(f"{command}: taskId must be a string")
        check_task_id(task_id)
    hunks = obj.get("hunks") if allow_hunks else None
    if hunks is not None:
        if not isinstance(hunks, list) or not all(isinstance(h, (str, int)) for h in hunks):
            raise InvalidArgument(f"{command}: hunks must be a list of change ids")
        hunks = tuple(str(h) for h in hunks)
    folder = obj.get("folder")
    if folder is not None and not isinstance(folder, str):
        raise InvalidArgument(f"{command}: folder must be a workspace folder URI")
    return TaskArgs(task_id, hunks, folder)
