"""The system prompt: who the agent is, its tools, its workspace, and the AGENTS.md files.

AGENTS.md convention (agents.md): a project keeps instructions for coding agents in `AGENTS.md` files.
One at the root applies to the whole project; one in a sub-folder applies to the files below that
folder; when two disagree, the one nearest to the file being changed wins, and the user's explicit
instructions win over all of them. The agent reads every AGENTS.md that is not ignored (git's rules,
via the shadow repository's file list, so `node_modules/**/AGENTS.md` stays out) and puts each in the
prompt with its scope, root first and deeper files after, stating the precedence rule in words.

Everything here is a pure function of its inputs except `discover_agents_files`, which reads them.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.paths import PathRefused, Workspace

log = logging.getLogger(__name__)

AGENTS_FILE = "AGENTS.md"
MAX_AGENTS_FILE_CHARS = 32_000
MAX_AGENTS_TOTAL_CHARS = 96_000


@dataclass(frozen=True, slots=True)
class AgentsFile:
    path: str  # workspace-relative, posix
    text: str

    @property
    def folder(self) -> str:
        """The folder the file governs, '' for the root."""
        return posixpath.dirname(self.path)

    @property
    def depth(self) -> int:
        return self.folder.count("/") + 1 if self.folder else 0

    @property
    def scope(self) -> str:
        return "applies to the whole workspace" if not self.folder else f"applies to files under {self.folder}/"


def discover_agents_files(workspace: Workspace, list_files: Callable[[Sequence[str]], list[str]]) -> list[AgentsFile]:
    """Every non-ignored AGENTS.md in the workspace, shallowest first (then by path).

    `list_files` takes git pathspecs and returns matching non-ignored workspace-relative paths.
    """
    candidates = [p for p in list_files([f":(glob)**/{AGENTS_FILE}"]) if posixpath.basename(p) == AGENTS_FILE]
    found: list[AgentsFile] = []
    for rel in candidates:
        try:
            real = workspace.resolve(rel)
        except PathRefused:
            log.warning("skipping %s: it points outside the workspace", rel)
            continue
        if not real.is_file():
            continue
        try:
            with open(real, encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_AGENTS_FILE_CHARS + 1)
        except OSError as exc:
            log.warning("cannot read %s: %s", rel, exc)
            continue
        if len(text) > MAX_AGENTS_FILE_CHARS:
            text = text[:MAX_AGENTS_FILE_CHARS] + f"\n[... {rel} is longer; the rest was left out ...]"
        found.append(AgentsFile(rel, text))
    found.sort(key=lambda f: (f.depth, f.path))
    return found


def render_agents_section(files: Sequence[AgentsFile]) -> str:
    if not files:
        return ""
    parts = [
        "# AGENTS.md instructions",
        "",
        "The workspace has AGENTS.md files with instructions from its maintainers. Each file applies to the "
        "folder it is in and everything below it. For any file you change, follow every AGENTS.md whose scope "
        "contains it; where they conflict, the more deeply nested AGENTS.md (the one nearest to the file) takes "
        "precedence. The task you are given below overrides all of them.",
    ]
    total = 0
    for f in files:
        if total + len(f.text) > MAX_AGENTS_TOTAL_CHARS:
            parts += ["", f"## {f.path} ({f.scope})", "", f"[not included: the AGENTS.md files are too long; "
                                                             f"read {f.path} with read_file_content]"]
            continue
        total += len(f.text)
        parts += ["", f"## {f.path} ({f.scope})", "", f.text.rstrip("\n")]
    return "\n".join(parts)


def render_focus(focus_paths: Sequence[str], focus_range: str) -> str:
    if not focus_paths and not focus_range:
        return ""
    lines = ["# Where the user is looking", ""]
    if focus_paths:
        lines.append("The user pointed at these files: " + ", ".join(focus_paths) + ".")
    if focus_range:
        lines.append(f"The user selected {focus_range} (path:first_line-last_line).")
    lines.append("Start there unless the task says otherwise.")
    return "\n".join(lines)


def system_prompt(*, workspace_root: str, tool_names: Sequence[str], agents_files: Sequence[AgentsFile],
                  focus_paths: Sequence[str] = (), focus_range: str = "") -> str:
    tools = "\n".join(f"- {name}" for name in tool_names)
    base = f"""You are codex-sys, an autonomous coding agent. You work alone on a copy of the user's project \
in a sandbox with no network access, and you complete the task you are given by inspecting and changing \
files with your tools. The user reviews your changes afterwards as a diff and applies them to their project.

The workspace root is {workspace_root}. Give file paths relative to it (absolute paths inside it also work); \
paths outside the workspace are refused. Shell commands start in the workspace root unless you pass \
target_directory.

Your tools:
{tools}

How to work:
- Look before you change: read the relevant code, follow the project's conventions, and keep changes focused \
on the task.
- Prefer edit_file_content for changing part of a file; its old_string must match the file exactly, \
once. Use write_file_content for new files or complete rewrites.
- Run the project's tests or linters when they exist and are relevant, and fix what you broke.
- Do not commit with git; your changes are collected from the workspace as they are.
- Commands cannot ask you anything (stdin is closed) and are killed when they run too long.
- When the task is done, answer with a short summary of what you changed and why, without calling a tool. \
That final message is shown to the user as the task summary."""
    sections = [base, render_agents_section(agents_files), render_focus(focus_paths, focus_range)]
    return "\n\n".join(s for s in sections if s)


def render_prompt_file(system: str, user: str) -> str:
    """`prompt.txt`: the two messages exactly as sent, each under a marker line."""
    return f"=== system ===\n{system}\n=== user ===\n{user}\n"
