"""Running git hardened: one environment, one config, credentials kept off command lines, a timeout.

Both users of git in the runner go through `HardenedGit`: the Git task sources (`git_fetch`: ls-remote and
shallow clones) and pull requests (`runner.pulls`: fetch, rebase, push).

The environment is built from nothing but PATH, the proxy and TLS variables and LC_ALL=C (`git_env`): no
system or global config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`, HOME and XDG_CONFIG_HOME in
a folder of the caller's), no inherited GIT_* variables, no prompts (`GIT_TERMINAL_PROMPT=0`, no askpass,
ssh in batch mode), and only the transports `runner.sources.urls` allows (`GIT_ALLOW_PROTOCOL`: no `ext::`,
`file://` only when the operator allows local Git URLs). The config (`_CONFIG`) turns off hooks
(`core.hooksPath=/dev/null`), fsmonitor, credential helpers, submodules, automatic gc and signing, and sets
low-speed limits so a stalled server cannot hold a call until its wall-time limit.

Credentials never appear on a command line (`ps` shows those to every user of the machine) or in a URL
git could echo. `remote_of` takes a URL's `user:password@` out and turns it into an `Authorization: Basic`
header (a GitHub token into `Basic x-access-token:TOKEN`, what GitHub documents for git over HTTPS), for
that URL's origin only. The config, headers included, reaches git through `GIT_CONFIG_COUNT`/
`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` in its environment, never through `-c`. ssh URLs authenticate with
the runner's own keys and git:// URLs have no credentials, so both go to git as given. Everything git
writes to stderr passes through `Redactor` (the URL's secrets and the encoded headers) before anyone sees it.

Each git process is a session leader: on a timeout (or when a caller's watcher decides, like the size
limit of a clone) its whole process group is killed, helpers (git-remote-http, index-pack) included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from runner.sources.urls import GitUrl, allowed_protocols

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
LOW_SPEED_TIME_S = 60  # abort a transfer slower than 1 KiB/s for this long
_PASSED_ENV = ("PATH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
               "ALL_PROXY", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")
_CONFIG = (("core.hooksPath", os.devnull), ("core.symlinks", "true"), ("core.fsmonitor", "false"),
           ("core.autocrlf", "false"), ("credential.helper", ""), ("submodule.recurse", "false"),
           ("fetch.recurseSubmodules", "false"), ("commit.gpgSign", "false"), ("protocol.version", "2"),
           ("http.lowSpeedLimit", "1024"), ("gc.auto", "0"), ("maintenance.auto", "false"),
           ("advice.detachedHead", "false"), ("init.defaultBranch", "main"))


def git_env(home: Path, *, allow_local: bool) -> dict[str, str]:
    """The environment git runs in (see the module docstring), without the config."""
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env.update({
        "HOME": str(home), "XDG_CONFIG_HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": "",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=15", "GIT_ALLOW_PROTOCOL":
            allowed_protocols(allow_local), "LC_ALL": "C", "LANG": "C", "GIT_OPTIONAL_LOCKS": "0",
    })
    return env


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


class GitTimedOut(Exception):
    """A git command outlived its time limit; its process group was killed. Callers say what it means."""

    def __init__(self, command: str, timeout_s: float) -> None:
        self.command = command
        self.timeout_s = timeout_s
        super().__init__(f"{command} took longer than {timeout_s:g} s and was stopped")


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL to the process group of `proc` (a session leader), unless it has already been reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


class HardenedGit:
    """git with the environment and config above, the remotes' headers, and their secrets redacted."""

    def __init__(self, home: Path, *, allow_local: bool, remotes: Sequence[Remote] = (),
                 extra_secrets: Sequence[str] = (), low_speed_time_s: int = LOW_SPEED_TIME_S,
                 ssh_agent: bool = False) -> None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.redact = Redactor([s for r in remotes for s in r.secrets] + list(extra_secrets))
        config = [*_CONFIG, ("protocol.file.allow", "always" if allow_local else "never"),
                  ("http.lowSpeedTime", str(low_speed_time_s))]
        # One header per origin, the first remote's winning: git would send both.
        headers: dict[str, str] = {}
        for remote in remotes:
            for origin, header in remote.headers:
                headers.setdefault(origin, header)
        config += [(f"http.{origin}.extraHeader", header) for origin, header in headers.items()]
        env = {**git_env(home, allow_local=allow_local), "GIT_CONFIG_COUNT": str(len(config))}
        for i, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        if ssh_agent and "SSH_AUTH_SOCK" in os.environ:  # the runner's own ssh agent, for ssh remotes
            env["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
        self.env = env

    async def run(self, args: Sequence[str], *, cwd: Path | None = None, timeout_s: float,
                  input: bytes | None = None, env: Mapping[str, str] | None = None,
                  while_running: Callable[[asyncio.subprocess.Process], Coroutine[object, object, None]] | None = None,
                  ) -> GitResult:
        """Run `git ARGS`; its exit status, stdout and redacted stderr, whatever the status.
        `while_running(proc)` runs alongside (cancelled when git ends); `GitTimedOut` after `timeout_s`."""
        command = f"git {args[0]}" if args else "git"
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env={**self.env, **(env or {})},
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        watcher = asyncio.create_task(while_running(proc)) if while_running is not None else None
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout_s)
        except TimeoutError:
            kill_group(proc)
            await proc.wait()
            raise GitTimedOut(command, timeout_s) from None
        except BaseException:
            kill_group(proc)
            await proc.wait()
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        rc = proc.returncode if proc.returncode is not None else -1
        log.debug("git", extra={"command": command, "returncode": rc})
        return GitResult(rc, out, self.redact(err.decode("utf-8", "replace")))
