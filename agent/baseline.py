"""The workspace baseline and the final diff, kept in a git repository outside the workspace.

After `setup.sh` and before any tool runs, the whole workspace is committed to a *shadow* repository
whose `GIT_DIR` lives in a temporary folder, with the workspace as its work tree. At the end, the
workspace is staged again and diffed against that commit. This gives, for free, everything the diff
contract asks for:

- files created by `setup.sh` are in the baseline, so they are not in the diff;
- `.gitignore` files are honoured by `git add -A`, so ignored files (build output, `node_modules`,
  caches) never enter either side;
- git writes new, deleted, renamed (`-M`), binary (`--binary`, with `--full-index` so it applies) files
  and mode changes in the format `git apply` reads.

The workspace's own `.git`, if the snapshot has one, is never read or touched: git skips `.git` entries
of a work tree. A *nested* repository (a folder below the root holding its own `.git`) is recorded by
git as a submodule link, so changes inside it do not appear in the diff.

Nothing of the user's or the machine's git configuration applies: `HOME` points at an empty folder,
system config is off, and the author is fixed, so the diff is the same wherever the agent runs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

_IDENTITY = {
    "GIT_AUTHOR_NAME": "codex-sys agent",
    "GIT_AUTHOR_EMAIL": "agent@codex-sys.invalid",
    "GIT_COMMITTER_NAME": "codex-sys agent",
    "GIT_COMMITTER_EMAIL": "agent@codex-sys.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}
_CONFIG = (
    ("core.autocrlf", "false"),
    ("core.filemode", "true"),
    ("core.symlinks", "true"),
    ("core.quotepath", "false"),
    ("core.hooksPath", os.devnull),
    ("gc.auto", "0"),
    ("commit.gpgsign", "false"),
    ("diff.renames", "true"),
    ("diff.noprefix", "false"),
    ("diff.mnemonicprefix", "false"),
)


class BaselineError(Exception):
    """A git command of the shadow repository failed."""


class ShadowRepo:
    """A git repository outside the workspace whose work tree is the workspace."""

    def __init__(self, workspace: str | os.PathLike[str], state_dir: str | os.PathLike[str] | None = None) -> None:
        self.workspace = Path(workspace)
        self._state = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="codex-agent-git-"))
        self.git_dir = self._state / "git"
        home = self._state / "home"
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_DIR": str(self.git_dir),
            "GIT_WORK_TREE": str(self.workspace),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            **_IDENTITY,
        }
        self._home = home
        self.baseline: str | None = None

    def init(self) -> None:
        """Create the repository: one git process, no templates, no hooks.

        The settings are appended to the new repository's config file directly: one `git config` call
        per setting would cost a process each, on the way to the first model request.
        """
        self._home.mkdir(parents=True, exist_ok=True)
        self._git("init", "--quiet", "--template=", str(self.git_dir), cwd=self._state)
        sections: dict[str, list[str]] = {}
        for key, value in _CONFIG:
            section, name = key.split(".", 1)
            sections.setdefault(section, []).append(f"\t{name} = {value}\n")
        with open(self.git_dir / "config", "a", encoding="utf-8") as f:
            for section, lines in sections.items():
                f.write(f"[{section}]\n" + "".join(lines))

    def record_baseline(self) -> str:
        """Commit the workspace as it is now; returns (and remembers) the commit id."""
        self._git("add", "--all")
        self._git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", "baseline")
        self.baseline = self._git("rev-parse", "HEAD").strip()
        return self.baseline

    def diff(self) -> bytes:
        """The binary-safe patch from the baseline to the workspace as it is now."""
        self._git("add", "--all")
        return self._git_bytes(
            "diff", "--cached", "--binary", "-M", "--full-index", "--no-color", "--no-ext-diff",
            "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", self._base(), "--",
        )

    def changed_paths(self) -> list[str]:
        """Paths the last `diff` covers (a rename counts once), from the index as last staged."""
        out = self._git_bytes("diff", "--cached", "--name-only", "-z", "-M", self._base(), "--")
        return [p.decode("utf-8", errors="replace") for p in out.split(b"\0") if p]

    def list_files(self, pathspecs: Sequence[str] = ()) -> list[str]:
        """Workspace-relative paths of files that are not ignored (tracked or not), in git's order.

        Safe to call while `record_baseline` runs in another thread: `--cached --others` lists a file
        whichever side of the index update it is on.
        """
        out = self._git_bytes("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                              *pathspecs)
        seen: dict[str, None] = {}
        for p in out.split(b"\0"):
            if p:
                seen.setdefault(p.decode("utf-8", errors="surrogateescape"), None)
        return list(seen)

    def _base(self) -> str:
        if self.baseline is None:
            raise BaselineError("no baseline was recorded")
        return self.baseline

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        return self._git_bytes(*args, cwd=cwd).decode("utf-8", errors="replace")

    def _git_bytes(self, *args: str, cwd: Path | None = None) -> bytes:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=cwd or self.workspace, env=self._env,
                stdin=subprocess.DEVNULL, capture_output=True, check=False,
            )
        except OSError as exc:
            raise BaselineError(f"cannot run git: {exc}") from exc
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", errors="replace").strip()[-2000:]
            raise BaselineError(f"git {args[0]} failed with status {proc.returncode}: {detail}")
        return proc.stdout
