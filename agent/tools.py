"""The tools the model may call: their JSON schemas, argument checking and dispatch.

The names and required arguments are a contract (DESIGN.md, "Agent tools"). `Toolbox.execute` never
raises for anything the model did: an unknown tool, arguments that are not JSON, a missing or mistyped
argument, a path outside the workspace, a command that fails or times out — each comes back as a
`ToolResult` whose text tells the model what happened, so the task goes on. Only a bug in the agent
itself propagates.

Every result is cut to the task's `tool_output_limit` characters, keeping the head and the tail (where
compilers and test runners put what matters) and saying how much of the middle went.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import ToolError
from agent.fileops import FileLister, FileTools
from agent.paths import Workspace
from agent.shell import HeadTail, run_process


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required,
                           "additionalProperties": False},
        },
    }


_PATH_NOTE = "Relative to the workspace root."

TOOL_SCHEMAS: tuple[dict[str, Any], ...] = (
    _fn("run_shell_command",
        "Run a bash command and get its exit code, stdout and stderr. stdin is closed; the command is killed "
        "(with everything it started) when it exceeds the time limit. Long output keeps its start and end.",
        {"command_string": {"type": "string", "description": "The bash command line to run."},
         "target_directory": {"type": "string", "default": ".",
                              "description": "Directory to run it in. " + _PATH_NOTE}},
        ["command_string"]),
    _fn("read_file_content",
        "Read a text file; lines come numbered from 1 like `cat -n`. Use offset and limit for long files.",
        {"file_path": {"type": "string", "description": "The file to read. " + _PATH_NOTE},
         "offset": {"type": "integer", "minimum": 1, "description": "First line to show (1-based)."},
         "limit": {"type": "integer", "minimum": 1, "description": "How many lines to show (default 2000)."}},
        ["file_path"]),
    _fn("write_file_content",
        "Create a file, or replace a file's whole content. Missing parent folders are created.",
        {"file_path": {"type": "string", "description": "The file to write. " + _PATH_NOTE},
         "content": {"type": "string", "description": "The complete new content."}},
        ["file_path", "content"]),
    _fn("edit_file_content",
        "Replace one exact occurrence of old_string with new_string in a file. old_string must match the "
        "file exactly (whitespace included) and only once; include surrounding lines to make it unique.",
        {"file_path": {"type": "string", "description": "The file to edit. " + _PATH_NOTE},
         "old_string": {"type": "string", "description": "The exact text to replace."},
         "new_string": {"type": "string", "description": "The text to put in its place."}},
        ["file_path", "old_string", "new_string"]),
    _fn("list_directory",
        "List a directory: sub-directories end with '/', executables with '*', symlinks show their target.",
        {"path": {"type": "string", "default": ".", "description": "The directory. " + _PATH_NOTE}},
        []),
    _fn("search_files",
        "Search text files for a Python regular expression, line by line; prints path:line: text. "
        "Skips .git, ignored files (per .gitignore) and binary files.",
        {"pattern": {"type": "string", "description": "A Python regular expression."},
         "path": {"type": "string", "default": ".", "description": "File or directory to search. " + _PATH_NOTE}},
        ["pattern"]),
)

TOOL_NAMES: tuple[str, ...] = tuple(t["function"]["name"] for t in TOOL_SCHEMAS)
_SCHEMAS_BY_NAME = {t["function"]["name"]: t["function"]["parameters"] for t in TOOL_SCHEMAS}


@dataclass(frozen=True, slots=True)
class ToolResult:
    output: str  # what the model reads
    ok: bool
    exit_code: int | None = None  # shell commands only


def truncate_middle(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters by dropping its middle, with a marker that says so."""
    if len(text) <= limit:
        return text
    marker = "\n[... {} characters omitted ...]\n"
    room = max(limit - len(marker) - 12, 0)
    head = room // 2
    tail = room - head
    omitted = len(text) - head - tail
    return text[:head] + marker.format(omitted) + (text[-tail:] if tail else "")


def check_arguments(name: str, raw: str) -> dict[str, Any]:
    """The call's arguments, validated against the tool's schema; raises `ToolError` for the model."""
    schema = _SCHEMAS_BY_NAME.get(name)
    if schema is None:
        raise ToolError(f"there is no tool named {name!r}; the tools are: {', '.join(TOOL_NAMES)}")
    try:
        args = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise ToolError(f"the arguments of {name} are not valid JSON ({exc}); send a JSON object") from exc
    if not isinstance(args, dict):
        raise ToolError(f"the arguments of {name} must be a JSON object, not {type(args).__name__}")
    properties: Mapping[str, Any] = schema["properties"]
    # Models sometimes send null for an optional argument: that means "not given".
    args = {k: v for k, v in args.items() if not (v is None and k not in schema["required"])}
    unknown = sorted(set(args) - set(properties))
    if unknown:
        raise ToolError(f"{name} has no argument(s) {', '.join(unknown)}; it takes: {', '.join(properties)}")
    missing = [k for k in schema["required"] if k not in args]
    if missing:
        raise ToolError(f"{name} needs the argument(s) {', '.join(missing)}")
    for key, given in list(args.items()):
        expected = properties[key]["type"]
        if expected == "integer":
            args[key] = _integer(name, key, given)
        elif expected == "string" and not isinstance(given, str):
            raise ToolError(f"{name}: {key} must be a string, got {type(given).__name__}")
    return args


def _integer(tool: str, key: str, value: Any) -> int:
    # Models often quote numbers or send 10.0; accept what is unambiguously an integer.
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolError(f"{tool}: {key} must be an integer, got {json.dumps(value)[:80]}")
    return value


def describe_call(name: str, raw: str, limit: int = 200) -> str:
    """A short, human-readable summary of a call's arguments for progress events."""
    try:
        args = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        text = raw
    elif name == "run_shell_command" and isinstance(args.get("command_string"), str):
        text = args["command_string"]
        where = args.get("target_directory")
        if isinstance(where, str) and where not in ("", "."):
            text += f"  (in {where})"
    elif name == "read_file_content" and isinstance(args.get("file_path"), str):
        text = args["file_path"]
        if args.get("offset") or args.get("limit"):
            text += f" [offset={args.get('offset') or 1}, limit={args.get('limit') or 'default'}]"
    elif name == "write_file_content" and isinstance(args.get("file_path"), str):
        content = args.get("content")
        size = f" ({len(content)} characters)" if isinstance(content, str) else ""
        text = args["file_path"] + size
    elif name == "search_files" and isinstance(args.get("pattern"), str):
        text = f"{args['pattern']!r} in {args.get('path') or '.'}"
    elif isinstance(args.get("file_path"), str):
        text = args["file_path"]
    elif isinstance(args.get("path"), str):
        text = args["path"]
    else:
        text = json.dumps(args, ensure_ascii=False)
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Toolbox:
    """Runs the model's tool calls inside the workspace."""

    def __init__(self, workspace: Workspace, list_files: FileLister, *, command_timeout_s: float,
                 output_limit: int, env: Mapping[str, str] | None = None) -> None:
        self.workspace = workspace
        self.files = FileTools(workspace, list_files, output_limit)
        self._timeout_s = command_timeout_s
        self._limit = output_limit
        base = dict(os.environ if env is None else env)
        # No terminal and no stdin: make sure nothing waits on a pager.
        base.update({"PAGER": "cat", "GIT_PAGER": "cat"})
        self._env = base

    schemas = TOOL_SCHEMAS
    names = TOOL_NAMES

    def execute(self, name: str, raw_arguments: str) -> ToolResult:
        try:
            args = check_arguments(name, raw_arguments)
            result = self._dispatch(name, args)
        except ToolError as exc:
            result = ToolResult(f"Error: {exc}", ok=False)
        except OSError as exc:
            # The disk said no (permissions, a full disk, a name too long): the model can adapt.
            result = ToolResult(f"Error: {exc.strerror or exc} ({exc.filename or name})", ok=False)
        except UnicodeError as exc:
            # A path or text the file system cannot encode (a lone surrogate from JSON, say).
            result = ToolResult(f"Error: {exc}", ok=False)
        return ToolResult(truncate_middle(result.output, self._limit), result.ok, result.exit_code)

    def _dispatch(self, name: str, args: dict[str, Any]) -> ToolResult:
        if name == "run_shell_command":
            return self.run_shell(args["command_string"], args.get("target_directory", "."))
        if name == "read_file_content":
            return ToolResult(self.files.read(args["file_path"], args.get("offset"), args.get("limit")), ok=True)
        if name == "write_file_content":
            return ToolResult(self.files.write(args["file_path"], args["content"]), ok=True)
        if name == "edit_file_content":
            return ToolResult(self.files.edit(args["file_path"], args["old_string"], args["new_string"]), ok=True)
        if name == "list_directory":
            return ToolResult(self.files.list_directory(args.get("path", ".")), ok=True)
        if name == "search_files":
            return ToolResult(self.files.search(args["pattern"], args.get("path", ".")), ok=True)
        raise ToolError(f"there is no tool named {name!r}")  # unreachable: check_arguments knows the names

    def run_shell(self, command: str, target_directory: str = ".") -> ToolResult:
        cwd = self.workspace.resolve(target_directory or ".", what="target_directory")
        if not cwd.is_dir():
            raise ToolError(f"target_directory {target_directory!r} is not an existing directory")
        if not command.strip():
            raise ToolError("command_string is empty")
        # Keep a little more than the model will see of each stream; the rest is counted, not kept.
        keep = max(self._limit, 4096)
        out, err = HeadTail(keep, keep), HeadTail(keep, keep)
        try:
            finished = run_process(["bash", "-c", command], cwd=cwd, timeout_s=self._timeout_s,
                                   stdout=out, stderr=err, env=self._env)
        except OSError as exc:
            raise ToolError(f"cannot start bash: {exc.strerror or exc}") from exc
        if finished.timed_out:
            status = (f"timed out after {self._timeout_s:g} s: the command and every process it started were "
                      "killed. Run long jobs with a smaller scope, or in the background with output to a file.")
        elif finished.signal is not None:
            status = f"killed by signal {finished.signal}"
        else:
            status = f"exit code: {finished.exit_code}"
        if finished.detached:
            status += ("\n(the command left background processes running that still hold its output; "
                       "their further output is not shown)")
        body = _render_streams(out.text(), err.text(), self._limit - len(status) - 40)
        ok = finished.exit_code == 0 and not finished.timed_out
        return ToolResult(f"{status}\n{body}", ok=ok, exit_code=finished.exit_code)


def _render_streams(stdout: str, stderr: str, budget: int) -> str:
    if not stdout and not stderr:
        return "(no output)"
    budget = max(budget, 200)
    if len(stdout) + len(stderr) > budget:
        # stderr usually holds the error that matters: it keeps at least a quarter of the room.
        err_share = min(len(stderr), max(budget // 4, budget - len(stdout)))
        stdout = truncate_middle(stdout, budget - err_share)
        stderr = truncate_middle(stderr, err_share)
    parts = []
    if stdout:
        parts.append("stdout:\n" + stdout.rstrip("\n"))
    if stderr:
        parts.append("stderr:\n" + stderr.rstrip("\n"))
    return "\n".join(parts)

