"""The ignore rules that apply to a workspace from outside it.

A workspace is often a git work tree, or a folder inside one. Then, as for `git status` run in that
folder, the repository's `.git/info/exclude` and the `.gitignore` files of the folders between the
repository's top and the workspace apply too. `base_rules` builds the `IgnoreRules` in force at the
workspace root from those, plus the caller's `exclude` patterns; the snapshot walk adds the `.gitignore`
files it meets inside the workspace.

The repository is found as git finds it: the nearest folder at or above the workspace holding a `.git`
folder or `.git` file (`gitdir: ...`, as in linked work trees and submodules), without crossing into
another file system. A linked work tree's `info/exclude` is its main repository's (`commondir`).

The workspace root itself is never treated as ignored, even when the outer rules would ignore it: the
user picked that folder, so its contents are judged by the patterns alone.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from runner.client.ignore import IgnoreRules, Pattern, match_name, parse_patterns

__all__ = ["Repository", "base_rules", "exclude_patterns", "find_repository", "head_commit", "read_ignore_file"]

log = logging.getLogger(__name__)

# An ignore file larger than this is not a hand-written one; it is read up to here.
MAX_IGNORE_FILE_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class Repository:
    top: str  # absolute path of the work tree's top folder
    git_dir: str  # absolute path of the repository folder (`.git`, or where a `.git` file points)
    common_dir: str  # where `info/exclude` lives (the main repository for a linked work tree)


def find_repository(folder: str) -> Repository | None:
    """The git work tree that contains `folder` (an absolute path), if any."""
    try:
        device = os.stat(folder).st_dev
    except OSError:
        return None
    current = folder
    while True:
        dot_git = os.path.join(current, ".git")
        try:
            st = os.lstat(dot_git)
        except OSError:
            st = None
        if st is not None:
            git_dir = _git_dir(current, dot_git)
            if git_dir is not None:
                return Repository(top=current, git_dir=git_dir, common_dir=_common_dir(git_dir))
        parent = os.path.dirname(current)
        if parent == current:
            return None
        try:
            if os.stat(parent).st_dev != device:
                return None  # git does not cross file systems looking for a repository either
        except OSError:
            return None
        current = parent


def head_commit(repo: Repository) -> str:
    """The commit checked out in the work tree (its HEAD), or "" when git cannot tell (no commit yet,
    git missing or failing)."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD^{commit}"], cwd=repo.top,
                              capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    commit = proc.stdout.decode("ascii", "replace").strip()
    return commit if proc.returncode == 0 and len(commit) in (40, 64) else ""


def _git_dir(top: str, dot_git: str) -> str | None:
    if os.path.isdir(dot_git):
        return dot_git
    try:
        with open(dot_git, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if not head.startswith(b"gitdir:"):
        return None
    target = os.fsdecode(head[len(b"gitdir:"):].strip())
    path = os.path.normpath(os.path.join(top, target))
    return path if os.path.isdir(path) else None


def _common_dir(git_dir: str) -> str:
    try:
        with open(os.path.join(git_dir, "commondir"), "rb") as f:
            common = os.fsdecode(f.read(4096).strip())
    except OSError:
        return git_dir
    return os.path.normpath(os.path.join(git_dir, common))


def read_ignore_file(path: str, origin: str) -> list[Pattern]:
    """The patterns of one ignore file; a missing or unreadable file has none.

    Like git (since 2.32), a `.gitignore` that is a symbolic link is not followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            log.warning("ignore file unreadable; its patterns are not applied",
                        extra={"path": path, "error": exc.strerror})
        return []
    try:
        with open(fd, "rb", closefd=False) as f:
            data = f.read(MAX_IGNORE_FILE_BYTES)
    except OSError as exc:  # e.g. a folder named .gitignore
        if exc.errno != errno.EISDIR:
            log.warning("ignore file unreadable; its patterns are not applied",
                        extra={"path": path, "error": exc.strerror})
        return []
    finally:
        os.close(fd)
    return parse_patterns(data, origin)


def base_rules(root: str, repo: Repository | None, exclude: Sequence[str] = ()) -> IgnoreRules:
    """The rules in force at the workspace `root` (absolute), inside `repo` (`find_repository(root)`),
    before its own `.gitignore` is read."""
    rules = IgnoreRules.empty()
    if repo is not None:
        info_exclude = os.path.join(repo.common_dir, "info", "exclude")
        rules = rules.with_lowest(read_ignore_file(info_exclude, info_exclude))
        relative = os.path.relpath(root, repo.top)
        folder = repo.top
        for name in [] if relative == "." else relative.split(os.sep):
            gitignore = os.path.join(folder, ".gitignore")
            rules = rules.with_file(read_ignore_file(gitignore, gitignore)).child(match_name(name))
            folder = os.path.join(folder, name)
        log.debug("workspace is inside a git work tree", extra={"top": repo.top, "git_dir": repo.git_dir})
    return rules.with_exclude(exclude_patterns(exclude)) if exclude else rules


def exclude_patterns(exclude: Sequence[str]) -> list[Pattern]:
    """The caller's gitignore-style patterns (one per item), relative to the workspace root."""
    return parse_patterns("\n".join(exclude).encode("utf-8", "surrogateescape"), "exclude")
