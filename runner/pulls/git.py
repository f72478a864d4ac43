"""Running git for pull requests: a hardened environment, timeouts, credentials kept off command lines.

Every command runs in a private temporary repository with an environment built from nothing but PATH:
no system or global config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`, HOME in the temporary
folder), no prompts (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode), no hooks (`core.hooksPath=/dev/null`),
only the transports `runner.sources.urls` allows (`GIT_ALLOW_PROTOCOL`: no `ext::`, `file://` only when
the operator allows local Git URLs), and low-speed limits so a
stalled server cannot hold a call forever. Each command also has a wall-time limit; on expiry its whole
process group is killed.

Credentials never appear on a command line (`ps` shows those to every user of the machine) or in a URL
git could echo: a URL's `user:password@` is taken out and sent as an `Authorization: Basic` header, and a
GitHub token as `Basic x-access-token:TOKEN` (what GitHub documents for git over HTTPS). Both travel as
`http.<origin>/.extraHeader` config through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, so
they reach only that origin. git's messages are passed through `Redactor` before anyone sees them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from runner.domain.errors import CodexError, FailedPrecondition, NotFound, PermissionDenied, Unavailable
from runner.sources.git_fetch import git_env
from runner.sources.urls import GitUrl

log = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 4000
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class Remote:
    """A remote as git gets it: `url` holds no credentials (but for a local path, the URL as given);
    `headers` are (origin, header) pairs; `secrets` are what git's messages must not show."""

    url: str
    display: str  # safe to show: errors and logs use this
    headers: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = field(default=(), repr=False)


def _basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def remote_of(url: GitUrl, *, github_token: str = "") -> Remote:
    """The credential-free form of a checked URL, its credentials (or a GitHub token) as headers.

    Only http(s) URLs carry credentials this way; ssh URLs authenticate with the runner's keys (their
    user name is no secret) and git:// and local remotes have none."""
    parts = urlsplit(url.url)
    secrets = list(url.secrets)
    if url.transport not in ("http", "https"):
        return Remote(url=url.url, display=url.redacted, secrets=tuple(secrets))
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    origin = f"{parts.scheme}://{netloc}/"
    headers: list[tuple[str, str]] = []
    if github_token:
        header = _basic("x-access-token", github_token)
        headers.append((origin, header))
        secrets += [github_token, header.split()[-1]]
    elif parts.username is not None or parts.password is not None:
        header = _basic(unquote(parts.username or ""), unquote(parts.password or ""))
        headers.append((origin, header))
        secrets.append(header.split()[-1])
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return Remote(url=clean, display=url.redacted, headers=tuple(headers), secrets=tuple(secrets))


class Redactor:
    """Replaces every known secret in a text; longest first, so no fragment of one survives."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


@dataclass(frozen=True, slots=True)
class GitResult:
    returncode: int
    out: bytes
    err: str  # redacted

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace").strip()


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
    low_speed_time_s: int = 60


class Git:
    """git in one repository folder, with the hardened environment above."""

    def __init__(self, repo: Path, home: Path, options: GitOptions, remotes: Sequence[Remote] = (),
                 extra_secrets: Sequence[str] = ()) -> None:
        self.repo = repo
        self._options = options
        secrets = [s for r in remotes for s in r.secrets] + list(extra_secrets)
        self.redact = Redactor(secrets)
        config: list[tuple[str, str]] = [
            ("core.hooksPath", os.devnull),
            ("core.fsmonitor", "false"),
            ("commit.gpgSign", "false"),
            ("protocol.version", "2"),
            ("http.lowSpeedLimit", "1024"),
            ("http.lowSpeedTime", str(options.low_speed_time_s)),
            ("credential.helper", ""),
            ("advice.detachedHead", "false"),
            ("gc.auto", "0"),
            ("maintenance.auto", "false"),
        ]
        # One header per origin, the first remote's (the push remote's) winning: git would send both.
        headers: dict[str, str] = {}
        for remote in remotes:
            for origin, header in remote.headers:
                headers.setdefault(origin, header)
        config += [(f"http.{origin}.extraHeader", header) for origin, header in headers.items()]
        # The sources' hardened environment (no system or global config, no prompts, allowed protocols).
        env = {**git_env(home, allow_local=options.allow_file), "LANG": "C", "GIT_CONFIG_COUNT": str(len(config))}
        if "SSH_AUTH_SOCK" in os.environ:  # the runner's own ssh agent, for ssh remotes
            env["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
        for i, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        self._env = env

    async def run(self, *args: str, input: bytes | None = None, check: bool = True,
                  env: Mapping[str, str] | None = None) -> GitResult:
        """Run `git ARGS` in the repository; `GitCommandError` on a non-zero exit when `check`,
        `Unavailable` when it outlives the timeout."""
        command = f"git {args[0]}" if args else "git"
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=self.repo, env={**self._env, **(env or {})},
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), self._options.timeout_s)
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            raise Unavailable(f"{command} took longer than {self._options.timeout_s:g} s; "
                              "the remote may be slow or unreachable, try again") from None
        except BaseException:
            _kill_group(proc)
            await proc.wait()
            raise
        rc = proc.returncode if proc.returncode is not None else -1
        result = GitResult(rc, out, self.redact(err.decode("utf-8", "replace")))
        log.debug("git", extra={"command": command, "returncode": rc})
        if check and rc != 0:
            raise GitCommandError(command, result, self.redact)
        return result


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


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
