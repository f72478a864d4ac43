"""Files git tracks although an ignore pattern matches them.

Ignore rules apply to untracked files only: a file added with `git add -f` (a committed bundle, an editor
setting in an ignored folder, a fixture named like a log) is part of the project, and the agent may need
it. Knowing which files are tracked takes git's index, so the snapshot asks git itself:
`git ls-files --cached --ignored --exclude-standard` lists exactly the tracked files that the rules
match. It runs on another core while the walk goes (started before the walk, read after it), so it adds
little to the snapshot's time.

Without git, outside a repository, or when git fails (an unsafe repository owner, a corrupt index) or
takes too long (it is killed), the snapshot goes on without those files, and says so in the log.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from types import TracebackType

from runner.client.gitrepo import Repository

__all__ = ["TrackedIgnored"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


class TrackedIgnored:
    """`git ls-files` for the tracked, ignored files under `root`; a context manager that kills git if
    its answer is not collected."""

    def __init__(self, root: str, repo: Repository | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._root = root
        self._deadline = time.monotonic() + timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        git = shutil.which("git") if repo is not None else None
        if git is None:
            if repo is not None:
                log.info("git is not installed: tracked files that ignore rules match are left out",
                         extra={"root": root})
            return
        env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
        try:
            self._proc = subprocess.Popen(
                [git, "ls-files", "-z", "--cached", "--ignored", "--exclude-standard"], cwd=root, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            log.warning("could not run git: tracked files that ignore rules match are left out",
                        extra={"root": root, "error": str(exc)})

    def __enter__(self) -> TrackedIgnored:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def paths(self) -> list[str]:
        """The workspace-relative paths git listed (empty when it could not tell)."""
        proc = self._proc
        if proc is None:
            return []
        try:
            out, err = proc.communicate(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.close()
            log.warning("git ls-files took too long and was stopped: tracked files that ignore rules match "
                        "are left out", extra={"root": self._root})
            return []
        finally:
            self._proc = None
        if proc.returncode != 0:
            log.warning("git ls-files failed: tracked files that ignore rules match are left out",
                        extra={"root": self._root, "exit_code": proc.returncode,
                               "stderr": err.decode("utf-8", "replace").strip()[:500]})
            return []
        return [os.fsdecode(p) for p in out.split(b"\0") if p]

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.communicate()
