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

The repository does not depend on the workspace until a command runs (the work tree is given by
`GIT_WORK_TREE` each time), so a warm sandbox creates it with `init_state_dir` before its task arrives
and the task does not pay for `git init`.
"""

from __future__ import annotations

import os
import shutil
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
    ("core.bare", "false"),  # `git init` with only GIT_DIR set makes a bare repository
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


def _base_env(state: Path) -> dict[str, str]:
    home = state / "home"
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        **_IDENTITY,
    }


def _run_git(args: Sequence[str], cwd: Path, env: dict[str, str]) -> bytes:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              check=False)
    except OSError as exc:
        raise BaselineError(f"cannot run git: {exc}") from exc
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", errors="replace").strip()[-2000:]
        raise BaselineError(f"git {args[0]} failed with status {proc.returncode}: {detail}")
    return proc.stdout


def init_state_dir(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """A folder holding a new, configured shadow repository (`git/`) and an empty `home/`.

    One git process, no templates, no hooks; the settings are appended to the config file directly
    rather than with one `git config` process each.
    """
    state = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="codex-agent-git-"))
    (state / "home").mkdir(parents=True, exist_ok=True)
    # GIT_DIR makes `git/` itself the repository (not `git/.git`); the work tree comes later.
    _run_git(["init", "--quiet", "--template="], state, {**_base_env(state), "GIT_DIR": str(state / "git")})
    sections: dict[str, list[str]] = {}
    for key, value in _CONFIG:
        section, name = key.split(".", 1)
        sections.setdefault(section, []).append(f"\t{name} = {value}\n")
    with open(state / "git" / "config", "a", encoding="utf-8") as f:
        for section, lines in sections.items():
            f.write(f"[{section}]\n" + "".join(lines))
    return state


class ShadowRepo:
    """A git repository outside the workspace whose work tree is the workspace."""

    def __init__(self, workspace: str | os.PathLike[str], state_dir: str | os.PathLike[str] | None = None) -> None:
        self.workspace = Path(workspace)
        self.state_dir = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="codex-agent-git-"))
        self.git_dir = self.state_dir / "git"
        self._env = {**_base_env(self.state_dir), "GIT_DIR": str(self.git_dir), "GIT_WORK_TREE": str(self.workspace)}
        self.baseline: str | None = None

    def init(self) -> None:
        """Create the repository, unless `init_state_dir` already did."""
        if not (self.git_dir / "HEAD").exists():
            init_state_dir(self.state_dir)

    def remove(self) -> None:
        """Delete the repository and its folder (the workspace is not touched)."""
        shutil.rmtree(self.state_dir, ignore_errors=True)

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

    def _git(self, *args: str) -> str:
        return self._git_bytes(*args).decode("utf-8", errors="replace")

    def _git_bytes(self, *args: str) -> bytes:
        return _run_git(args, self.workspace, self._env)
