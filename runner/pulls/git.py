"""Running git for pull requests: `Git`, one private temporary repository on `runner.sources.git_command`.

Every command runs in a private temporary repository with the hardened environment and config of
`runner.sources.git_command` (no system or global config, no prompts, no hooks, only the allowed
transports, low-speed limits) plus the runner's own ssh agent for ssh remotes, and with a wall-time
limit; on expiry its whole process group is killed.

Credentials never appear on a command line (`ps` shows those to every user of the machine) or in a URL
git could echo: `remote_of` takes a URL's `user:password@` out and sends it as an `Authorization: Basic`
header, and a GitHub token as `Basic x-access-token:TOKEN`, both as `http.<origin>/.extraHeader` config
in git's environment, so they reach only that origin. git's messages are redacted before anyone sees
them; `classify` turns a failed fetch, ls-remote or push into the runner's error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.domain.errors import CodexError, FailedPrecondition, NotFound, PermissionDenied, Unavailable
from runner.sources.git_command import (
    LOW_SPEED_TIME_S,
    GitResult,
    GitTimedOut,
    HardenedGit,
    Redactor,
    Remote,
)

MAX_OUTPUT_CHARS = 4000


class GitCommandError(Exception):
    """A git command exited non-zero; `message` is git's (redacted) stderr. Callers turn it into the
    runner's own error for what they were doing."""

    def __init__(self, command: str, result: GitResult, redact: Redactor) -> None:
        self.command = command
        self.result = result
        # A push reports each ref on stdout (--porcelain) and the remote's own words on stderr.
        out = result.out.decode("utf-8", "replace").strip() if len(result.out) < 20_000 else ""
        self.message = _tail(redact("\n".join(t for t in (result.err.strip(), out) if t)))
        super().__init__(f"{command} failed: {self.message}")


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_OUTPUT_CHARS else "…" + text[-MAX_OUTPUT_CHARS:]


@dataclass(frozen=True, slots=True)
class GitOptions:
    timeout_s: float = 300.0
    allow_file: bool = False
    # Abort a transfer slower than 1 KiB/s for this long.
    low_speed_time_s: int = LOW_SPEED_TIME_S


class Git:
    """git in one repository folder, with the hardened environment of `runner.sources.git_command`."""

    def __init__(self, repo: Path, home: Path, options: GitOptions, remotes: Sequence[Remote] = (),
                 extra_secrets: Sequence[str] = ()) -> None:
        self.repo = repo
        self._options = options
        # The first remote's (the push remote's) header wins for an origin.
        self._git = HardenedGit(home, allow_local=options.allow_file, remotes=remotes, extra_secrets=extra_secrets,
                                low_speed_time_s=options.low_speed_time_s, ssh_agent=True)
        self.redact = self._git.redact

    async def run(self, *args: str, input: bytes | None = None, check: bool = True,
                  env: Mapping[str, str] | None = None) -> GitResult:
        """Run `git ARGS` in the repository; `GitCommandError` on a non-zero exit when `check`,
        `Unavailable` when it outlives the timeout."""
        try:
            result = await self._git.run(args, cwd=self.repo, timeout_s=self._options.timeout_s, input=input,
                                         env=env)
        except GitTimedOut as exc:
            raise Unavailable(f"{exc.command} took longer than {exc.timeout_s:g} s; "
                              "the remote may be slow or unreachable, try again") from None
        if check and result.returncode != 0:
            raise GitCommandError(f"git {args[0]}" if args else "git", result, self.redact)
        return result


_REJECTED = ("[remote rejected]", "hook declined", "[rejected]", "stale info")
_DENIED = ("403", "401", "permission denied", "permission to", "authentication failed", "access denied",
           "not authorized", "could not read username", "invalid username or password")
_MISSING = ("repository not found", "does not appear to be a git repository", "not found", "no such repository")
_UNREACHABLE = ("could not resolve host", "connection refused", "connection timed out", "timed out",
                "unable to connect", "network is unreachable", "couldn't connect", "failed to connect",
                "connection reset", "empty reply", "502", "503", "504")


def classify(exc: GitCommandError, doing: str, remote: Remote) -> CodexError:
    """The runner's error for a failed fetch, ls-remote or push at `remote`, git's message quoted."""
    said = exc.message.lower()
    where = f"{doing} at {remote.display}"
    if any(s in said for s in _REJECTED):
        return FailedPrecondition(f"{where}: the remote rejected it: {exc.message}")
    if any(s in said for s in _DENIED):
        return PermissionDenied(f"{where}: the remote refused the credentials or they lack the right (give a "
                                f"token with write access to the repository): {exc.message}")
    if any(s in said for s in _UNREACHABLE):
        return Unavailable(f"{where}: the remote cannot be reached; try again: {exc.message}")
    if any(s in said for s in _MISSING):
        return NotFound(f"{where}: no such repository, or it is not visible with these credentials: "
                        f"{exc.message}")
    return FailedPrecondition(f"{where} failed: {exc.message}")
