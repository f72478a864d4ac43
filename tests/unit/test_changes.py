"""A task's patch as changes: every kind git writes, parsed from real `git diff` output, and applied back
through the same anchoring and edit code the server uses, on random files (the result must be git's)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from language_server.editor import apply_text_edits
from lsprotocol import types as lsp

from lsp_server.anchoring import Fit, Misfit, locate, locate_all
from lsp_server.textlines import split_lines, units
from lsp_server.workspace_edits import hunk_edit
from runner.domain.changes import Change, ChangeKind, parse_changes
from runner.domain.errors import InvalidArgument

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "core.quotepath=false"]


def git_patch(root: Path, before: dict[str, bytes], after: dict[str, bytes | None]) -> str:
    """The patch git writes (the agent's flags) for turning `before` into `after` (None deletes)."""
    subprocess.run([*GIT, "init", "-q", str(root)], check=True)
    for rel, data in before.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-qm", "base", "--allow-empty"], check=True)
    for rel, data in after.items():
        path = root / rel
        if data is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    out = subprocess.run([*GIT, "-C", str(root), "diff", "--cached", "--binary", "-M", "--full-index", "--no-color",
                          "--no-ext-diff"], check=True, capture_output=True)
    return out.stdout.decode("utf-8", "surrogateescape")


def apply_all(old: str, hunks: list[Fit | Misfit | None], changes: list[Change]) -> str:
    lines = split_lines(old)
    edits = [hunk_edit(c.hunks[0], f, lines, "utf-16")
             for c, f in zip(changes, hunks, strict=True) if isinstance(f, Fit)]
    return apply_text_edits(old, edits)


def test_every_kind_of_change_git_writes(tmp_path: Path) -> None:
    patch = git_patch(tmp_path, {
        "edit.txt": b"a\nb\nc\n", "noeol.txt": b"x\ny", "gone.txt": b"bye\n", "old_name.txt": b"same\ncontent\n",
        "bin.dat": b"\x00\x01", "tool.sh": b"echo hi\n", "crlf.txt": b"one\r\ntwo\r\n",
    }, {
        "edit.txt": b"a\nB\nc\nd\n", "noeol.txt": b"x\nz", "gone.txt": None, "old_name.txt": None,
        "new_name.txt": b"same\ncontent\n", "bin.dat": b"\x00\x02", "created/deep.txt": b"hello\n",
        "crlf.txt": b"one\r\nTWO\r\n", "empty.txt": b"",
    })
    subprocess.run(["chmod", "+x", str(tmp_path / "tool.sh")], check=True)
    patch += git_patch(tmp_path / "m", {"tool.sh": b"echo hi\n"}, {})  # nothing: mode changes below
    (tmp_path / "m" / "tool.sh").chmod(0o755)
    mode = subprocess.run([*GIT, "-C", str(tmp_path / "m"), "diff", "--no-color"], check=True,
                          capture_output=True, text=True).stdout
    changes = parse_changes(patch + mode)
    by_path = {c.path: c for c in changes}
    assert [c.id for c in changes] == [str(i) for i in range(1, len(changes) + 1)]
    assert by_path["edit.txt"].kind is ChangeKind.EDIT
    assert by_path["edit.txt"].hunks[0].old_lines == ("a\n", "b\n", "c\n")
    assert by_path["noeol.txt"].hunks[0].old_lines == ("x\n", "y")
    assert by_path["noeol.txt"].hunks[0].new_lines == ("x\n", "z")
    assert by_path["gone.txt"].kind is ChangeKind.DELETE and by_path["gone.txt"].old_text == "bye\n"
    assert by_path["new_name.txt"].kind is ChangeKind.RENAME and by_path["new_name.txt"].old_path == "old_name.txt"
    assert by_path["new_name.txt"].hunks == ()
    assert by_path["bin.dat"].kind is ChangeKind.BINARY
    assert by_path["created/deep.txt"].kind is ChangeKind.CREATE
    assert by_path["created/deep.txt"].new_text == "hello\n"
    assert by_path["empty.txt"].kind is ChangeKind.CREATE and by_path["empty.txt"].new_text == ""
    assert by_path["crlf.txt"].hunks[0].new_lines == ("one\r\n", "TWO\r\n")
    assert by_path["tool.sh"].kind is ChangeKind.MODE


def test_names_git_quotes_are_unquoted(tmp_path: Path) -> None:
    patch = git_patch(tmp_path, {}, {'we"ird\tname.txt': b"x\n", "café.txt": b"y\n"})
    assert sorted(c.path for c in parse_changes(patch)) == ["café.txt", 'we"ird\tname.txt']


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "a/../../b", ".git/config"])
def test_a_patch_naming_a_path_outside_the_workspace_is_refused(path: str) -> None:
    patch = f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"
    with pytest.raises(InvalidArgument, match="path"):
        parse_changes(patch)


def test_an_empty_patch_has_no_changes() -> None:
    assert parse_changes("") == []


@pytest.mark.parametrize("seed", range(12))
def test_random_edits_applied_hunk_by_hunk_give_what_git_gave(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "é", "😀", "x" * 30, "", "  indented", "}"]
    old_lines = [rng.choice(words) + f" {i}\n" for i in range(rng.randint(1, 120))]
    new_lines = list(old_lines)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(new_lines) + 1)
        op = rng.choice(["insert", "delete", "replace"])
        if op == "insert" or not new_lines:
            new_lines[at:at] = [rng.choice(words) + " new\n" for _ in range(rng.randint(1, 3))]
        elif op == "delete":
            del new_lines[min(at, len(new_lines) - 1)]
        else:
            new_lines[min(at, len(new_lines) - 1)] = rng.choice(words) + " changed\n"
    old, new = "".join(old_lines), "".join(new_lines)
    if rng.random() < 0.3:
        new = new.rstrip("\n")  # no newline at the end
    if old == new:
        new += "tail\n"
    changes = parse_changes(git_patch(tmp_path, {"f.txt": old.encode()}, {"f.txt": new.encode()}))
    assert changes and all(c.kind is ChangeKind.EDIT for c in changes)
    found = locate_all([(c.hunks[0], False) for c in changes], split_lines(old))
    assert all(isinstance(f, Fit) for f in found), found
    assert apply_all(old, found, changes) == new

    # The same after the user inserted lines at the top: every hunk moves and still applies.
    shifted = "# a line the user added\n# and another\n" + old
    found = locate_all([(c.hunks[0], False) for c in changes], split_lines(shifted))
    assert all(isinstance(f, Fit) for f in found), found
    assert apply_all(shifted, found, changes) == "# a line the user added\n# and another\n" + new


def test_a_hunk_whose_lines_were_edited_no_longer_fits_and_an_applied_one_says_so() -> None:
    old = "".join(f"line {i}\n" for i in range(20))
    changes = parse_changes(
        "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -9,3 +9,3 @@\n line 8\n-line 9\n+LINE 9\n line 10\n")
    hunk = changes[0].hunks[0]
    assert locate(hunk, split_lines(old), 8) == Fit(8, 3)
    edited = old.replace("line 9\n", "line nine\n")
    miss = locate(hunk, split_lines(edited), 8)
    assert isinstance(miss, Misfit) and "edited after the task started" in miss.reason
    applied = old.replace("line 9\n", "LINE 9\n")
    miss = locate(hunk, split_lines(applied), 8)
    assert isinstance(miss, Misfit) and miss.reason == "already applied"


def test_two_equally_near_matches_are_ambiguous() -> None:
    block = "x\ny\nz\n"
    text = "top\n" + block + "mid\n" + block
    changes = parse_changes("diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -3,3 +3,3 @@\n x\n-y\n+Y\n z\n")
    # Expected at line 2 (0-based); the blocks are at 1 and 5: the nearest wins.
    assert locate(changes[0].hunks[0], split_lines(text), 2) == Fit(1, 3)
    # Expected at 3: at distance 2 from both.
    miss = locate(changes[0].hunks[0], split_lines(text), 3)
    assert isinstance(miss, Misfit) and "appears twice" in miss.reason


def test_a_range_ending_on_a_last_line_without_newline_is_measured_in_utf16() -> None:
    lines = split_lines("a\n😀é")
    changes = parse_changes("diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-😀é\n\\ No newline at end "
                            "of file\n+b\n\\ No newline at end of file\n")
    edit = hunk_edit(changes[0].hunks[0], Fit(0, 2), lines, "utf-16")
    assert edit.range.end == lsp.Position(1, 3) and units("😀é", "utf-8") == 6
    assert edit.new_text == "a\nb"
