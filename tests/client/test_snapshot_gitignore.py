"""The snapshot leaves out exactly what git ignores: compared with real `git ls-files` on the same trees."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from client_helpers import Git, paths_of, write_tree

from runner.client.snapshot import take_snapshot

# The last lines are git's quirks: a `**` glued to a name spans folders and may match none (`g**/glued`
# matches `gglued`), an escaped slash is a slash, a slash inside a set does not split the pattern.
TRICKY_GITIGNORE = r"""# a comment, then a blank line

*.log
!important.log
/build/
docs/*.md
!docs/keep.md
**/tmp
cache/
a/**/z.txt
\#hash
\!bang
*.py[co]
[!a-c]x.dat
data/**
!data/keep/
foo/**/bar/
nested/deep/
caf?
???.txt
[[:digit:]]*.num
x[[:alpha:]-]y
br[]]acket
unterminated[ab
star**star
/anchored-*.txt
mid/*/end
g**/glued
lib/src**
esc\/aped
br[/ ]acket
***/triple
n**/**/m
""" + "trailing\\ \nspaced   \n"  # an escaped trailing space is kept; plain trailing spaces are not

TRICKY_FILES = {
    ".gitignore": TRICKY_GITIGNORE,
    "app.log": "", "important.log": "", "logs/app.log": "", "logs/important.log": "",
    "build/out.o": "", "src/build/kept.c": "",  # /build/ is anchored
    "docs/a.md": "", "docs/keep.md": "", "docs/sub/b.md": "", "other/docs/c.md": "",
    "tmp": "", "x/tmp/y": "", "x/y/tmp": "",
    "cache/c": "", "deep/cache/c": "", "file-named-cache/cache": "",
    "a/z.txt": "", "a/b/z.txt": "", "a/b/c/z.txt": "", "b/a/z.txt": "",
    "#hash": "", "!bang": "", "trailing ": "", "trailing": "", "spaced": "", "spaced   ": "",
    "m.pyc": "", "m.pyo": "", "m.py": "", "m.pyd": "",
    "ax.dat": "", "dx.dat": "", "zx.dat": "", "xx.dat": "",
    "data/a": "", "data/keep/b": "", "data/keep/sub/c": "",
    "foo/bar/f": "", "foo/x/y/bar/f": "", "foo/baz/bar": "",  # foo/**/bar/ matches folders only
    "nested/deep/f": "", "x/nested/deep/f": "",
    "cafe": "", "caff": "", "caf\u00e9": "", "caf\u00e9s": "",
    "abc.txt": "", "abcd.txt": "", "\u00e9a.txt": "",
    "1.num": "", "a1.num": "",
    "xay": "", "x-y": "", "x1y": "",
    "br]acket": "", "bracket": "",
    "unterminated[ab": "", "unterminateda": "",
    "starXstar": "", "star/star": "",
    "anchored-1.txt": "", "sub/anchored-2.txt": "",
    "mid/one/end": "", "mid/one/two/end": "", "mid/end": "",
    "gglued": "", "g/glued": "", "gx/y/glued": "", "glued": "",
    "lib/src/a": "", "lib/srcx/b/c": "", "lib/sr": "",
    "esc/aped": "", "escaped": "",
    "br acket": "", "br/acket": "",
    "triple": "", "t/triple": "", "nm": "", "nx/m": "", "nx/y/m": "", "n/m": "", "m": "",
    # nested ignore files, negations and a folder-only pattern
    "sub/.gitignore": "!*.log\n/only-here.txt\nx/\n",
    "sub/s.log": "", "sub/only-here.txt": "", "sub/deeper/only-here.txt": "", "sub/x/f": "", "sub/y/x": "",
    "sub/deeper/.gitignore": "*\n!*.keep\n!*/\n",
    "sub/deeper/a.keep": "", "sub/deeper/a.txt": "", "sub/deeper/more/b.keep": "", "sub/deeper/more/b.c": "",
    "sub/deeper/.hidden.keep": "",
    # an ignored folder whose contents a later negation cannot bring back
    "ignored-dir/.gitignore": "!*\n", "ignored-dir/f": "",
}


def test_tricky_tree_matches_git(tmp_path: Path, git: Git) -> None:
    files = dict(TRICKY_FILES)
    files[".gitignore"] = TRICKY_GITIGNORE + "ignored-dir/\n"
    write_tree(tmp_path, files)
    git.init(tmp_path)
    (tmp_path / ".git" / "info" / "exclude").write_text("excluded-by-info\n!keep-by-info.log\n")
    write_tree(tmp_path, {"excluded-by-info": "", "sub/excluded-by-info": "", "keep-by-info.log": ""})

    expected = git.untracked(tmp_path)
    snapshot = take_snapshot(tmp_path)
    assert set(paths_of(snapshot)) == expected
    assert not snapshot.skipped
    # A few answers spelled out, so a regression in both git and us would still show.
    assert "important.log" in expected and "app.log" not in expected
    assert "sub/s.log" in expected and "sub/deeper/a.keep" in expected and "sub/deeper/a.txt" not in expected
    # '?' matches one byte, as in git: not the two of an 'é', but '???' matches 'éa'.
    assert "caf\u00e9" in expected and "cafe" not in expected and "\u00e9a.txt" not in expected
    assert "unterminated[ab" in expected  # an unterminated set matches nothing
    assert "gglued" not in expected and "gx/y/glued" not in expected and "glued" in expected
    # .gitignore outranks .git/info/exclude: its *.log beats the negation there.
    assert "keep-by-info.log" not in expected and "excluded-by-info" not in expected


def test_workspace_inside_a_repository_gets_the_outer_rules(tmp_path: Path, git: Git) -> None:
    write_tree(tmp_path, {
        ".gitignore": "*.tmp\n/top-only\nproject/generated/\n!project/keep.tmp\n",
        "project/.gitignore": "local.txt\n",
        "project/a.py": "", "project/b.tmp": "", "project/keep.tmp": "", "project/top-only": "",
        "project/generated/x.py": "", "project/local.txt": "", "project/sub/local.txt": "",
        "top-only": "",
    })
    git.init(tmp_path)
    (tmp_path / ".git" / "info" / "exclude").write_text("*.info\n")
    write_tree(tmp_path, {"project/sub/x.info": ""})
    workspace = tmp_path / "project"
    expected = git.untracked(workspace)
    assert set(paths_of(take_snapshot(workspace))) == expected
    assert expected == {".gitignore", "a.py", "keep.tmp", "top-only"}


def test_linked_work_tree_reads_the_main_repositorys_info_exclude(tmp_path: Path, git: Git) -> None:
    main = tmp_path / "main"
    main.mkdir()
    git.init(main)
    write_tree(main, {"README": "x"})
    git(main, "add", "README")
    git(main, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "init")
    git(main, "worktree", "add", "-q", str(tmp_path / "linked"))
    (main / ".git" / "info" / "exclude").write_text("*.secret\n")
    linked = tmp_path / "linked"
    write_tree(linked, {"a.secret": "", "b.txt": ""})
    assert set(paths_of(take_snapshot(linked))) == {"README", "b.txt"}
    assert git.untracked(linked) == {"b.txt"}


def test_caller_excludes_outrank_the_workspace_rules_as_git_exclude_does(tmp_path: Path, git: Git) -> None:
    write_tree(tmp_path, {
        ".gitignore": "!*.bin\nvendor/\n",
        "a.bin": "", "b.txt": "", "data/c.bin": "", "data/keep.bin": "", "vendor/v.py": "", "src/m.py": "",
    })
    git.init(tmp_path)
    exclude = ["*.bin", "!keep.bin", "src/"]
    expected = git.untracked(tmp_path, *(f"--exclude={p}" for p in exclude))
    assert set(paths_of(take_snapshot(tmp_path, exclude=exclude))) == expected
    assert expected == {".gitignore", "b.txt", "data/keep.bin"}


def test_git_folders_are_never_entered(tmp_path: Path, git: Git) -> None:
    write_tree(tmp_path, {"a.txt": "", "sub/.git": "gitdir: /nowhere\n", "sub/b.txt": "",
                          "other/.git/config": "", "other/c.txt": ""})
    git.init(tmp_path)
    snapshot = take_snapshot(tmp_path)
    assert paths_of(snapshot) == ["a.txt", "other/c.txt", "sub/b.txt"]
    assert not snapshot.skipped


def test_ignored_folders_are_not_entered(tmp_path: Path) -> None:
    write_tree(tmp_path, {".gitignore": "node_modules/\n", "a.js": "", "node_modules/x/y.js": ""})
    # Things inside would be reported if the walk went in: a FIFO and an undecodable name.
    os.mkfifo(tmp_path / "node_modules" / "fifo")
    (tmp_path / "node_modules" / os.fsdecode(b"bad\xff")).write_bytes(b"")
    snapshot = take_snapshot(tmp_path)
    assert paths_of(snapshot) == [".gitignore", "a.js"]
    assert not snapshot.skipped
    assert snapshot.stats.ignored == 1


# ---- randomized comparison with git --------------------------------------------------------------------

_NAMES = ["a", "b", "ab", "ba", "a.b", "b.a", "x", ".h", "aa"]
_GLOBS = ["a", "b", "*", "?", "a*", "*a", "*.b", "[ab]", "[!a]", "?b", "**", "a?", "\\a", "[a-b]*", "x"]


def _random_pattern(rnd: random.Random, globs: list[str]) -> str:
    parts = [rnd.choice(globs) for _ in range(rnd.choice([1, 1, 1, 2, 2, 3]))]
    pattern = "/".join(parts)
    if rnd.random() < 0.2:
        pattern = "/" + pattern
    if rnd.random() < 0.2:
        pattern += "/"
    if rnd.random() < 0.25:
        pattern = "!" + pattern
    return pattern


_ODD_NAMES = ["a", "#a", "!a", "a ", "1a", "[a]", "*", "\u00e9", "a\u00e9", "a b", "-", "]", ".x"]
_ODD_GLOBS = ["a", "*", "?", "[ab]", "[!a]", "**", "\\#a", "\\!a", "#a", "!a", "a ", "a\\ ", "[b-a]", "[a-]",
              "[]-]", "[!]]", "[[:digit:]]*", "[[:space:]]", "\u00e9", "?\u00e9", "[\u00e9]", "*\u00e9*", "\\*",
              "[*]", "a[", "[[:bogus:]]", "b**", "**a", "a/**/", "\\[a]", "1*", "a\\"]


@pytest.mark.parametrize(("seed", "names", "globs"), [
    (20240611, _NAMES, _GLOBS),
    (7, _ODD_NAMES, _ODD_GLOBS),  # escapes, odd sets, classes, spaces, comments, non-ASCII
])
def test_random_trees_and_patterns_match_git(tmp_path: Path, git: Git, seed: int, names: list[str],
                                             globs: list[str]) -> None:
    """Random patterns (globs, sets, `**`, anchors, negations, folder-only) in nested ignore files over
    random trees: the snapshot must list what git lists, every time. (Run with many more seeds while
    developing: over 6,000 cases agree with git 2.39.)"""
    rnd = random.Random(seed)
    for case in range(40):
        root = tmp_path / f"case{case}"
        root.mkdir()
        files: dict[str, str] = {}
        for _ in range(rnd.randint(8, 30)):
            depth = rnd.randint(1, 4)
            files["/".join(rnd.choice(names) for _ in range(depth))] = ""
        # A path cannot be both a file and a folder: keep the folders.
        folders = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        files = {p: c for p, c in files.items() if p not in folders}
        for folder in ["", *sorted(folders)[:4]]:
            if rnd.random() < 0.7:
                lines = [_random_pattern(rnd, globs) for _ in range(rnd.randint(1, 5))]
                files[(folder + "/" if folder else "") + ".gitignore"] = "\n".join(lines) + "\n"
        write_tree(root, files)
        git.init(root)
        expected = git.untracked(root)
        got = set(paths_of(take_snapshot(root)))
        assert got == expected, (case, {p: c for p, c in files.items() if p.endswith(".gitignore")})
