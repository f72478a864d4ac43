"""The file tools: read, write, edit, list, search — everything but the shell.

Each method takes the model's (already type-checked) arguments, resolves paths through `Workspace` and
returns the text the model sees, or raises `ToolError` with a message that says what to do instead.

Memory stays bounded whatever the file: reading streams line by line and cuts long lines while reading
them (a 1 GB single-line file never becomes one string), and the output stops at the model's character
budget with the `offset` to continue from. Edits read and write without newline translation, so a file
keeps its line endings, and in place, so it keeps its mode (an executable stays executable).
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from agent.errors import ToolError
from agent.paths import PathRefused, Workspace

FileLister = Callable[[Sequence[str]], list[str]]

SNIFF_BYTES = 8192
DEFAULT_READ_LINES = 2000
MAX_LINE_CHARS = 2000
# Above this size a read does not count the remaining lines (that would mean scanning the whole file).
COUNT_LINES_UP_TO_BYTES = 8 << 20
MAX_LIST_ENTRIES = 500
MAX_SEARCH_MATCHES = 200
MAX_SEARCH_FILE_BYTES = 4 << 20
MAX_SEARCH_LINE_CHARS = 300


def is_binary(head: bytes) -> bool:
    """The heuristic git and grep use: a NUL byte near the start means binary."""
    return b"\0" in head


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


def _read_line(f: IO[str], cap: int) -> tuple[str, int]:
    """The next line (newline included) cut to `cap` characters, and how many characters were cut."""
    line = f.readline(cap)
    if not line or line.endswith("\n") or len(line) < cap:
        return line, 0
    cut = 0
    while True:
        more = f.readline(1 << 16)
        if not more:
            return line, cut
        if more.endswith("\n"):
            return line + "\n", cut + len(more) - 1
        cut += len(more)


class FileTools:
    def __init__(self, workspace: Workspace, list_files: FileLister, output_limit: int) -> None:
        self.workspace = workspace
        self._list_files = list_files
        self._limit = output_limit

    # ---- read -----------------------------------------------------------------------------------------

    def read(self, file_path: str, offset: int | None = None, limit: int | None = None) -> str:
        real = self._existing_file(file_path)
        first = 1 if offset is None else offset
        count = DEFAULT_READ_LINES if limit is None else limit
        if first < 1:
            raise ToolError("offset is the 1-based number of the first line to show; it must be at least 1")
        if count < 1:
            raise ToolError("limit is a number of lines; it must be at least 1")
        size = real.stat().st_size
        with open(real, "rb") as raw:
            head = raw.read(SNIFF_BYTES)
        if is_binary(head):
            raise ToolError(f"{file_path} is a binary file ({human_size(size)}); read_file_content shows text "
                            "only. Inspect it with run_shell_command (for example `file` or `xxd | head`).")
        if size == 0:
            return f"({file_path} is empty)"
        out: list[str] = []
        used = 0
        shown_last = 0
        stopped_for_budget = False
        budget = max(self._limit - 300, 1000)  # room for the footer
        with open(real, encoding="utf-8", errors="replace") as f:
            lineno = 0
            while True:
                line, cut = _read_line(f, MAX_LINE_CHARS)
                if not line:
                    break
                lineno += 1
                if lineno < first:
                    continue
                if lineno >= first + count:
                    break
                text = line.rstrip("\n").rstrip("\r")
                if cut:
                    text += f" [... line cut: {cut} more characters]"
                rendered = f"{lineno:6d}\t{text}"
                if used + len(rendered) + 1 > budget and out:
                    stopped_for_budget = True
                    break
                out.append(rendered)
                used += len(rendered) + 1
                shown_last = lineno
            more = bool(line)
            total: int | None = None
            if not more:
                total = lineno
            elif size <= COUNT_LINES_UP_TO_BYTES:
                total = lineno + sum(1 for _ in f)
        if not out:
            if total is not None:
                raise ToolError(f"{file_path} has {total} lines; offset {first} is past the end")
            raise ToolError(f"offset {first} is past the end of {file_path}")
        if not more:
            return "\n".join(out)
        of_total = f" of {total}" if total is not None else f" (the file is {human_size(size)}; more lines follow)"
        why = "output limit reached" if stopped_for_budget else "limit reached"
        out.append(f"[{why}: showed lines {first}-{shown_last}{of_total}; "
                   f"call read_file_content with offset={shown_last + 1} to continue]")
        return "\n".join(out)

    # ---- write ----------------------------------------------------------------------------------------

    def write(self, file_path: str, content: str) -> str:
        real = self.workspace.resolve(file_path, what="file_path")
        if real == self.workspace.root or real.is_dir():
            raise ToolError(f"{file_path} is a directory; give the path of a file")
        existed = real.exists()
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ToolError(f"cannot create the folders for {file_path}: a parent is a file") from exc
        except OSError as exc:
            raise ToolError(f"cannot create the folders for {file_path}: {exc.strerror}") from exc
        data = content.encode("utf-8", errors="replace")
        self._write_bytes(real, file_path, data)
        lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
        verb = "Replaced" if existed else "Created"
        return f"{verb} {self.workspace.relative(real)} ({lines} lines, {len(data)} bytes)."

    def _write_bytes(self, real: Path, file_path: str, data: bytes) -> None:
        # O_NOFOLLOW: `real` has no symlink left in it, so one appearing now is a swap we refuse.
        try:
            fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PathRefused(f"{file_path} became a symlink; not writing through it") from exc
            raise ToolError(f"cannot write {file_path}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    # ---- edit -----------------------------------------------------------------------------------------

    def edit(self, file_path: str, old_string: str, new_string: str) -> str:
        real = self._existing_file(file_path)
        if not old_string:
            raise ToolError("old_string is empty; give the exact text to replace, or use write_file_content "
                            "to create or overwrite a whole file")
        if old_string == new_string:
            raise ToolError("old_string and new_string are the same; nothing to change")
        raw = real.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolError(f"{file_path} is not UTF-8 text; edit_file_content only edits text files "
                            "(use write_file_content to replace it whole)") from exc
        old, new = old_string, new_string
        count = text.count(old)
        if count == 0 and "\r\n" in text and "\r\n" not in old and "\n" in old:
            # The model writes "\n"; the file uses CRLF. Match and write in the file's convention.
            old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
            count = text.count(old)
        if count == 0:
            raise ToolError(f"old_string was not found in {file_path}. {_not_found_hint(text, old_string)}")
        if count > 1:
            lines = _match_lines(text, old)
            where = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
            raise ToolError(f"old_string was found {count} times in {file_path} (at lines {where}); it must "
                            "match exactly once. Include more surrounding lines to make it unique.")
        at = text.index(old)
        updated = text[:at] + new + text[at + len(old):]
        self._write_bytes(real, file_path, updated.encode("utf-8"))
        first = text.count("\n", 0, at) + 1
        last = first + new.count("\n")
        return f"Edited {self.workspace.relative(real)}: replaced 1 occurrence.\n" + _snippet(updated, first, last)

    # ---- list -----------------------------------------------------------------------------------------

    def list_directory(self, path: str = ".") -> str:
        real = self.workspace.resolve(path)
        if not real.exists():
            raise ToolError(f"{path}: no such directory")
        if not real.is_dir():
            raise ToolError(f"{path} is a file, not a directory; read it with read_file_content")
        try:
            with os.scandir(real) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise ToolError(f"cannot list {path}: {exc.strerror}") from exc
        lines: list[str] = []
        for entry in entries[:MAX_LIST_ENTRIES]:
            lines.append(_describe_entry(entry))
        if len(entries) > MAX_LIST_ENTRIES:
            lines.append(f"[... {len(entries) - MAX_LIST_ENTRIES} more entries not shown]")
        where = self.workspace.relative(real)
        header = f"{where}/ ({len(entries)} entries)" if where != "." else f"./ ({len(entries)} entries)"
        return "\n".join([header, *lines]) if lines else f"{header}\n(empty directory)"

    # ---- search ---------------------------------------------------------------------------------------

    def search(self, pattern: str, path: str = ".") -> str:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"pattern is not a valid Python regular expression: {exc}") from exc
        real = self.workspace.resolve(path)
        if not real.exists():
            raise ToolError(f"{path}: no such file or directory")
        rel = self.workspace.relative(real)
        candidates = [rel] if real.is_file() else self._list_files([] if rel == "." else [f":(literal){rel}"])
        matches: list[str] = []
        used = 0
        budget = max(self._limit - 300, 1000)
        searched = skipped = 0
        truncated = False
        for name in candidates:
            if truncated:
                break
            target = self.workspace.root / name
            try:
                info = os.lstat(target)
            except OSError:
                continue  # listed by git but deleted since
            if not stat.S_ISREG(info.st_mode):
                continue  # symlinks are searched through their targets, which are listed themselves
            if info.st_size > MAX_SEARCH_FILE_BYTES:
                skipped += 1
                continue
            try:
                data = target.read_bytes()
            except OSError:
                skipped += 1
                continue
            if is_binary(data[:SNIFF_BYTES]):
                continue
            searched += 1
            for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                if not regex.search(line):
                    continue
                shown = line if len(line) <= MAX_SEARCH_LINE_CHARS else line[:MAX_SEARCH_LINE_CHARS] + " [...]"
                rendered = f"{name}:{lineno}: {shown}"
                if len(matches) >= MAX_SEARCH_MATCHES or used + len(rendered) + 1 > budget:
                    truncated = True
                    break
                matches.append(rendered)
                used += len(rendered) + 1
        notes: list[str] = []
        if truncated:
            notes.append(f"[stopped after {len(matches)} matches; narrow the pattern or the path]")
        if skipped:
            notes.append(f"[{skipped} file(s) larger than {human_size(MAX_SEARCH_FILE_BYTES)} or unreadable "
                         "were not searched]")
        if not matches:
            return "\n".join([f"No matches for {pattern!r} in {searched} text file(s) under {rel}.", *notes])
        return "\n".join([*matches, *notes])

    # ---- helpers --------------------------------------------------------------------------------------

    def _existing_file(self, file_path: str) -> Path:
        real = self.workspace.resolve(file_path, what="file_path")
        if not real.exists():
            raise ToolError(f"{file_path}: no such file (paths are relative to the workspace root)")
        if real.is_dir():
            raise ToolError(f"{file_path} is a directory; use list_directory to see what it holds")
        if not real.is_file():
            raise ToolError(f"{file_path} is not a regular file")
        return real


def _describe_entry(entry: os.DirEntry[str]) -> str:
    try:
        if entry.is_symlink():
            return f"{entry.name} -> {os.readlink(entry.path)}"
        if entry.is_dir():
            return f"{entry.name}/"
        info = entry.stat()
        executable = "*" if info.st_mode & 0o111 else ""
        return f"{entry.name}{executable}  ({human_size(info.st_size)})"
    except OSError:
        return entry.name


def _match_lines(text: str, needle: str) -> list[int]:
    lines: list[int] = []
    start = text.find(needle)
    while start != -1:
        lines.append(text.count("\n", 0, start) + 1)
        start = text.find(needle, start + 1)
    return lines


def _snippet(text: str, first: int, last: int, context: int = 3, max_lines: int = 40) -> str:
    lines = text.splitlines()
    lo = max(1, first - context)
    hi = min(len(lines), last + context, lo + max_lines - 1)
    return "\n".join(f"{n:6d}\t{lines[n - 1]}" for n in range(lo, hi + 1))


def _not_found_hint(text: str, old: str) -> str:
    """Why an exact match may have failed, from cheapest to most expensive guess."""
    file_lines = text.splitlines()
    stripped_old = [ln.strip() for ln in old.splitlines() if ln.strip()]
    if stripped_old:
        stripped_file = [ln.strip() for ln in file_lines]
        n = len(stripped_old)
        for i in range(len(stripped_file)):
            if stripped_file[i] != stripped_old[0]:
                continue
            window = [ln for ln in stripped_file[i:i + n * 2] if ln][:n]
            if window == stripped_old:
                return (f"The same lines appear at line {i + 1} with different indentation or whitespace; "
                        "copy them exactly (read_file_content shows the file as it is).")
        close = difflib.get_close_matches(stripped_old[0], stripped_file[:50_000], n=1, cutoff=0.6)
        if close:
            line = stripped_file.index(close[0]) + 1
            return (f"The closest line to the start of old_string is line {line}: {file_lines[line - 1]!r}. "
                    "Read the file again and copy the text exactly.")
    return "Read the file again with read_file_content and copy the text to replace exactly."
