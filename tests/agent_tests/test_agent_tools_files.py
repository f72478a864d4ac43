"""The file tools through `Toolbox.execute`, as the model calls them: real files in a temp workspace."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from agent_testing import call, make_toolbox

from agent.baseline import ShadowRepo
from agent.tools import Toolbox

pytestmark = pytest.mark.timeout(20)


# ---- read_file_content ------------------------------------------------------------------------------


def test_read_numbers_lines_like_cat_n(ws: Path, toolbox: Toolbox) -> None:
    (ws / "a.txt").write_text("one\ntwo\nthree\n")
    result = call(toolbox, "read_file_content", file_path="a.txt")
    assert result.ok
    assert result.output == "     1\tone\n     2\ttwo\n     3\tthree"


def test_read_with_offset_and_limit_says_how_to_continue(ws: Path, toolbox: Toolbox) -> None:
    (ws / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    result = call(toolbox, "read_file_content", file_path="a.txt", offset=10, limit=3)
    lines = result.output.splitlines()
    assert lines[:3] == ["    10\tline 10", "    11\tline 11", "    12\tline 12"]
    assert lines[3] == "[limit reached: showed lines 10-12 of 100; call read_file_content with offset=13 to continue]"


def test_read_offset_past_the_end(ws: Path, toolbox: Toolbox) -> None:
    (ws / "a.txt").write_text("x\ny\n")
    result = call(toolbox, "read_file_content", file_path="a.txt", offset=5)
    assert not result.ok
    assert "has 2 lines; offset 5 is past the end" in result.output


def test_read_empty_file(ws: Path, toolbox: Toolbox) -> None:
    (ws / "empty.txt").write_text("")
    assert call(toolbox, "read_file_content", file_path="empty.txt").output == "(empty.txt is empty)"


def test_read_binary_file_gets_a_clear_message(ws: Path, toolbox: Toolbox) -> None:
    (ws / "blob.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 10)
    result = call(toolbox, "read_file_content", file_path="blob.bin")
    assert not result.ok
    assert "blob.bin is a binary file (2.5 KiB)" in result.output


def test_read_huge_file_stops_at_the_output_limit(ws: Path, repo: ShadowRepo) -> None:
    box = make_toolbox(ws, repo, limit=5000)
    with open(ws / "big.log", "w") as f:
        for i in range(2_000_000):  # ~45 MB: too big to count lines cheaply
            f.write(f"log line number {i}\n")
    result = call(box, "read_file_content", file_path="big.log")
    assert result.ok
    assert len(result.output) <= 5000
    footer = result.output.splitlines()[-1]
    assert footer.startswith("[output limit reached: showed lines 1-")
    assert "(the file is 44.7 MiB; more lines follow)" in footer
    assert "call read_file_content with offset=" in footer


def test_read_cuts_one_enormous_line_without_loading_it(ws: Path, toolbox: Toolbox) -> None:
    (ws / "min.js").write_text("x" * 5_000_000 + "\nsecond\n")
    result = call(toolbox, "read_file_content", file_path="min.js")
    first, second = result.output.splitlines()
    assert first.endswith("[... line cut: 4998000 more characters]")
    assert second == "     2\tsecond"


def test_read_missing_file_and_directory(ws: Path, toolbox: Toolbox) -> None:
    (ws / "d").mkdir()
    missing = call(toolbox, "read_file_content", file_path="nope.txt")
    assert not missing.ok and "nope.txt: no such file" in missing.output
    directory = call(toolbox, "read_file_content", file_path="d")
    assert not directory.ok and "is a directory" in directory.output


# ---- path escapes for every file tool -----------------------------------------------------------------


@pytest.fixture
def outside(ws: Path) -> Path:
    target = ws.parent / "outside.txt"
    target.write_text("do not touch\n")
    os.symlink(target, ws / "link-out")
    os.symlink(ws.parent, ws / "dir-out")
    return target


@pytest.mark.parametrize("path_of", [
    lambda ws: str(ws.parent / "outside.txt"),  # absolute
    lambda ws: "../outside.txt",  # dot-dot
    lambda ws: "link-out",  # symlink to a file outside
    lambda ws: "dir-out/outside.txt",  # through a symlinked directory
])
@pytest.mark.parametrize(("tool", "extra"), [
    ("read_file_content", {}),
    ("write_file_content", {"content": "pwned\n"}),
    ("edit_file_content", {"old_string": "do not", "new_string": "did"}),
])
def test_file_tools_refuse_paths_outside(ws: Path, toolbox: Toolbox, outside: Path, path_of: object,
                                         tool: str, extra: dict[str, str]) -> None:
    assert callable(path_of)
    result = call(toolbox, tool, file_path=path_of(ws), **extra)
    assert not result.ok
    assert result.output.startswith("Error: file_path ")
    assert "outside the workspace" in result.output
    assert outside.read_text() == "do not touch\n"


def test_write_through_a_dangling_symlink_pointing_outside_is_refused(ws: Path, toolbox: Toolbox) -> None:
    target = ws.parent / "created-outside.txt"
    os.symlink(target, ws / "dangling")
    result = call(toolbox, "write_file_content", file_path="dangling", content="x")
    assert not result.ok and "outside the workspace" in result.output
    assert not target.exists()


def test_list_and_search_refuse_paths_outside(ws: Path, toolbox: Toolbox, outside: Path) -> None:
    for tool, args in (("list_directory", {"path": ".."}), ("list_directory", {"path": "dir-out"}),
                       ("search_files", {"pattern": "touch", "path": "/"}),
                       ("run_shell_command", {"command_string": "pwd", "target_directory": "../"})):
        result = call(toolbox, tool, **args)
        assert not result.ok, (tool, args)
        assert "outside the workspace" in result.output


def test_absolute_path_inside_the_workspace_works(ws: Path, toolbox: Toolbox) -> None:
    result = call(toolbox, "write_file_content", file_path=str(ws / "abs.txt"), content="ok\n")
    assert result.ok
    assert (ws / "abs.txt").read_text() == "ok\n"


# ---- write_file_content -------------------------------------------------------------------------------


def test_write_creates_parents_and_reports(ws: Path, toolbox: Toolbox) -> None:
    result = call(toolbox, "write_file_content", file_path="deep/er/new.py", content="a = 1\nb = 2\n")
    assert result.ok
    assert result.output == "Created deep/er/new.py (2 lines, 12 bytes)."
    assert (ws / "deep" / "er" / "new.py").read_text() == "a = 1\nb = 2\n"


def test_write_replaces_and_keeps_the_mode(ws: Path, toolbox: Toolbox) -> None:
    script = ws / "run.sh"
    script.write_text("old\n")
    script.chmod(0o755)
    result = call(toolbox, "write_file_content", file_path="run.sh", content="#!/bin/sh\necho new\n")
    assert result.output.startswith("Replaced run.sh")
    assert script.read_text() == "#!/bin/sh\necho new\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755


def test_write_through_a_symlink_inside_writes_its_target(ws: Path, toolbox: Toolbox) -> None:
    (ws / "real.txt").write_text("old\n")
    os.symlink("real.txt", ws / "alias.txt")
    assert call(toolbox, "write_file_content", file_path="alias.txt", content="new\n").ok
    assert (ws / "real.txt").read_text() == "new\n"
    assert (ws / "alias.txt").is_symlink()


def test_write_to_a_directory_or_under_a_file_fails_clearly(ws: Path, toolbox: Toolbox) -> None:
    (ws / "d").mkdir()
    (ws / "f").write_text("")
    on_dir = call(toolbox, "write_file_content", file_path="d", content="x")
    assert not on_dir.ok and "is a directory" in on_dir.output
    under_file = call(toolbox, "write_file_content", file_path="f/x.txt", content="x")
    assert not under_file.ok and "a parent is a file" in under_file.output


def test_write_keeps_content_byte_exact(ws: Path, toolbox: Toolbox) -> None:
    content = "crlf\r\nno newline at end ünïcødé"
    assert call(toolbox, "write_file_content", file_path="x.txt", content=content).ok
    assert (ws / "x.txt").read_bytes() == content.encode()


# ---- edit_file_content --------------------------------------------------------------------------------


def test_edit_replaces_exactly_once_and_shows_the_result(ws: Path, toolbox: Toolbox) -> None:
    (ws / "m.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    result = call(toolbox, "edit_file_content", file_path="m.py", old_string="    return 2\n",
                  new_string="    return 3\n")
    assert result.ok
    assert result.output.startswith("Edited m.py: replaced 1 occurrence.\n")
    assert "     6\t    return 3" in result.output
    assert (ws / "m.py").read_text() == "def f():\n    return 1\n\n\ndef g():\n    return 3\n"


def test_edit_not_found_hints_at_whitespace(ws: Path, toolbox: Toolbox) -> None:
    (ws / "m.py").write_text("class A:\n    def f(self):\n        return 1\n")
    result = call(toolbox, "edit_file_content", file_path="m.py", old_string="def f(self):\n    return 1",
                  new_string="def f(self):\n    return 2")
    assert not result.ok
    assert "old_string was not found in m.py" in result.output
    assert "appear at line 2 with different indentation or whitespace" in result.output
    assert (ws / "m.py").read_text() == "class A:\n    def f(self):\n        return 1\n"


def test_edit_not_found_points_at_the_closest_line(ws: Path, toolbox: Toolbox) -> None:
    (ws / "m.py").write_text("import os\n\nVALUE = compute_the_value(1)\n")
    result = call(toolbox, "edit_file_content", file_path="m.py", old_string="VALUE = compute_value(1)",
                  new_string="VALUE = 2")
    assert not result.ok
    assert "closest line to the start of old_string is line 3: 'VALUE = compute_the_value(1)'" in result.output


def test_edit_not_found_without_any_likeness(ws: Path, toolbox: Toolbox) -> None:
    (ws / "m.py").write_text("a\n")
    result = call(toolbox, "edit_file_content", file_path="m.py", old_string="zzzzzzzzzzzz", new_string="q")
    assert "Read the file again with read_file_content" in result.output


def test_edit_found_several_times_lists_the_lines(ws: Path, toolbox: Toolbox) -> None:
    (ws / "m.py").write_text("x = 1\ny = 2\nx = 1\nz = 3\nx = 1\n")
    result = call(toolbox, "edit_file_content", file_path="m.py", old_string="x = 1", new_string="x = 9")
    assert not result.ok
    assert "old_string was found 3 times in m.py (at lines 1, 3, 5)" in result.output
    assert "Include more surrounding lines" in result.output
    assert (ws / "m.py").read_text() == "x = 1\ny = 2\nx = 1\nz = 3\nx = 1\n"


def test_edit_refuses_empty_and_identical_strings(ws: Path, toolbox: Toolbox) -> None:
    (ws / "m.py").write_text("a\n")
    empty = call(toolbox, "edit_file_content", file_path="m.py", old_string="", new_string="b")
    assert not empty.ok and "old_string is empty" in empty.output
    same = call(toolbox, "edit_file_content", file_path="m.py", old_string="a", new_string="a")
    assert not same.ok and "the same" in same.output


def test_edit_keeps_crlf_line_endings(ws: Path, toolbox: Toolbox) -> None:
    (ws / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    result = call(toolbox, "edit_file_content", file_path="w.txt", old_string="one\ntwo\n", new_string="1\n2\n")
    assert result.ok, result.output
    assert (ws / "w.txt").read_bytes() == b"1\r\n2\r\nthree\r\n"


def test_edit_refuses_non_utf8_files(ws: Path, toolbox: Toolbox) -> None:
    (ws / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    result = call(toolbox, "edit_file_content", file_path="latin1.txt", old_string="caf", new_string="tea")
    assert not result.ok and "is not UTF-8 text" in result.output


def test_edit_keeps_the_executable_bit(ws: Path, toolbox: Toolbox) -> None:
    script = ws / "s.sh"
    script.write_text("echo a\n")
    script.chmod(0o750)
    assert call(toolbox, "edit_file_content", file_path="s.sh", old_string="a", new_string="b").ok
    assert stat.S_IMODE(script.stat().st_mode) == 0o750


# ---- list_directory and search_files ------------------------------------------------------------------


def test_list_directory_marks_kinds(ws: Path, toolbox: Toolbox) -> None:
    (ws / "src").mkdir()
    (ws / "README.md").write_text("hello\n")
    (ws / "run.sh").write_text("")
    (ws / "run.sh").chmod(0o755)
    os.symlink("README.md", ws / "link")
    result = call(toolbox, "list_directory")
    assert result.ok
    assert result.output.splitlines() == [
        "./ (4 entries)", "README.md  (6 bytes)", "link -> README.md", "run.sh*  (0 bytes)", "src/"]
    empty = call(toolbox, "list_directory", path="src")
    assert empty.output == "src/ (0 entries)\n(empty directory)"


def test_list_directory_of_a_file_or_nothing(ws: Path, toolbox: Toolbox) -> None:
    (ws / "f").write_text("")
    assert "is a file, not a directory" in call(toolbox, "list_directory", path="f").output
    assert "no such directory" in call(toolbox, "list_directory", path="nope").output


def test_search_skips_git_ignored_and_binary_files(ws: Path, toolbox: Toolbox) -> None:
    (ws / ".gitignore").write_text("build/\n*.log\n")
    (ws / "src").mkdir()
    (ws / "src" / "a.py").write_text("import os\nTODO = 'fix me'\n")
    (ws / "src" / "b.py").write_text("# TODO: later\n")
    (ws / "build").mkdir()
    (ws / "build" / "gen.py").write_text("TODO in build output\n")
    (ws / "debug.log").write_text("TODO in a log\n")
    (ws / "data.bin").write_bytes(b"\x00TODO binary")
    (ws / ".git").mkdir()
    (ws / ".git" / "HEAD").write_text("TODO in git\n")
    result = call(toolbox, "search_files", pattern=r"TODO\b")
    assert result.ok
    assert result.output.splitlines() == ["src/a.py:2: TODO = 'fix me'", "src/b.py:1: # TODO: later"]


def test_search_within_a_path_and_a_file(ws: Path, toolbox: Toolbox) -> None:
    (ws / "src").mkdir()
    (ws / "docs").mkdir()
    (ws / "src" / "a.py").write_text("needle\n")
    (ws / "docs" / "b.md").write_text("needle\n")
    assert call(toolbox, "search_files", pattern="needle", path="docs").output == "docs/b.md:1: needle"
    assert call(toolbox, "search_files", pattern="needle", path="src/a.py").output == "src/a.py:1: needle"


def test_search_sees_files_created_after_the_baseline(ws: Path, repo: ShadowRepo, toolbox: Toolbox) -> None:
    repo.record_baseline()
    (ws / "new.txt").write_text("fresh needle\n")
    assert call(toolbox, "search_files", pattern="needle").output == "new.txt:1: fresh needle"


def test_search_reports_no_match_and_bad_patterns(ws: Path, toolbox: Toolbox) -> None:
    (ws / "a.txt").write_text("hay\n")
    none = call(toolbox, "search_files", pattern="needle")
    assert none.ok and none.output == "No matches for 'needle' in 1 text file(s) under .."
    bad = call(toolbox, "search_files", pattern="(unclosed")
    assert not bad.ok and "not a valid Python regular expression" in bad.output


def test_search_stops_at_a_bounded_number_of_matches(ws: Path, toolbox: Toolbox) -> None:
    (ws / "many.txt").write_text("match\n" * 10_000)
    result = call(toolbox, "search_files", pattern="match")
    lines = result.output.splitlines()
    assert len(lines) == 201
    assert lines[-1] == "[stopped after 200 matches; narrow the pattern or the path]"
