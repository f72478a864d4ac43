"""Shallow clones of a task's Git source with a hardened `git`, bounded in time and size.

`list_refs` runs `git ls-remote --symref` (the API runs it when a task is created, so an unreachable host
or an unknown ref is refused at once; the worker runs it again to resolve the ref). `resolve` turns the
ref asked for into what to fetch: a branch (tried first), a tag, or a full commit id; an empty ref is the
remote's default branch. `clone` fetches that one commit with `--depth=1` into a fresh repository and
checks it out, recording the commit id.

git runs hardened (`git_command`): an environment of its own, hooks, credential helpers and submodules
off, only the allowed protocols (file only when the operator enables local sources), and credentials never
on a command line: git gets the URL without its `user:password@`, and the credentials as an
`Authorization` header for that URL's origin through its environment. A timeout or the size limit kills
git and its helpers (git-remote-http, index-pack) together. The size of the clone folder is watched while
git runs, so a repository over `max_repo_bytes` is stopped as it arrives, not after it filled the disk.

Errors say what happened in words, with the URL redacted and git's own output scrubbed of credentials:
an unreachable host is `Unavailable` (temporary: the worker retries it; the API refuses the task), a
missing repository or ref `InvalidArgument`, refused credentials `FailedPrecondition`, a clone over the
limit `ResourceExhausted`, a clone that takes too long `Unavailable`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.client.limits import format_bytes
from runner.domain.errors import (
    CodexError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from runner.sources.git_command import GitTimedOut, HardenedGit, kill_group, remote_of
from runner.sources.settings import MiB, SourceSettings
from runner.sources.urls import GitUrl, is_full_commit, scrub

log = logging.getLogger(__name__)

SIZE_POLL_S = 0.2
_AUTH = ("Authentication failed", "could not read Username", "could not read Password",
         "terminal prompts disabled", "Permission denied (publickey", "returned error: 401",
         "returned error: 403", "Host key verification failed")
_MISSING = ("Repository not found", "not found", "no such repository", "does not appear to be a git repository",
            "access denied or repository not exported", "returned error: 404", "No such file or directory",
            "not a git repository")
_UNREACHABLE = ("Could not resolve", "Connection refused", "unable to connect", "Connection timed out",
                "Failed to connect", "Network is unreachable", "No route to host", "timed out",
                "Connection reset", "unable to access", "Could not read from remote repository",
                "the remote end hung up")


@dataclass(frozen=True, slots=True)
class RemoteRefs:
    refs: Mapping[str, str]  # full ref name -> commit (tags peeled where the remote says so)
    head: str  # the default branch's full ref name ("refs/heads/main"), "" when the remote does not say


@dataclass(frozen=True, slots=True)
class Target:
    """What to fetch for the ref asked for."""

    fetch: str  # a full ref name, "HEAD", or a commit id
    label: str  # for people: "main", "tag v1", "commit 1a2b3c4d5e6f", "the default branch"
    commit: str  # as the remote listed it ("" for a commit id not at any ref's tip)


@dataclass(frozen=True, slots=True)
class Cloned:
    commit: str
    label: str


class _Git:
    """git commands for one URL: the hardened runner with the URL's credentials as a header, and errors
    in the runner's words, scrubbed of its secrets."""

    def __init__(self, url: GitUrl, settings: SourceSettings, home: Path) -> None:
        self.url = url
        self.remote = remote_of(url)
        self.git = HardenedGit(home, allow_local=settings.allow_local, remotes=[self.remote])

    async def run(self, args: Sequence[str], *, cwd: Path | None = None, timeout_s: float,
                  watch: Path | None = None, limit_bytes: int = 0) -> str:
        """Run `git args`; its stdout. Raises the runner's errors (see the module docstring)."""
        over: list[int] = []
        watcher = functools.partial(_watch_size, watch, limit_bytes, over) if watch is not None and limit_bytes \
            else None
        try:
            result = await self.git.run(args, cwd=cwd, timeout_s=timeout_s, while_running=watcher)
        except GitTimedOut:
            raise Unavailable(f"git {args[0]} of {self.url} took longer than {timeout_s:g} s and was stopped",
                              delay_s=30.0) from None
        if over:
            raise ResourceExhausted(
                f"the repository {self.url} is larger than the limit of {limit_bytes // MiB} MiB "
                f"({format_bytes(over[0])} when it was stopped); the operator sets the limit with "
                "--git-max-repo-mb / CODEX_SYS_GIT_MAX_REPO_MB")
        if result.returncode != 0:
            raise self.error(args[0], result.err)
        return result.out.decode("utf-8", "replace")

    def error(self, command: str, stderr: str) -> CodexError:
        text = scrub(stderr, self.url)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = "; ".join(lines[-3:])[:600] or "no message"
        where = f"{self.url}"
        if any(p in text for p in _AUTH):
            return FailedPrecondition(f"the Git server refused access to {where} (authentication failed or "
                                      f"credentials needed): {detail}")
        if any(p in text for p in _MISSING) and not any(p in text for p in _UNREACHABLE[:9]):
            return InvalidArgument(f"there is no Git repository at {where}: {detail}")
        if any(p in text for p in _UNREACHABLE):
            return Unavailable(f"cannot reach the Git server of {where}: {detail}", delay_s=10.0)
        return InvalidArgument(f"git {command} of {where} failed: {detail}")


def folder_size(root: Path) -> int:
    """Bytes of the regular files under `root` (symbolic links not followed)."""
    total = 0
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue  # git renames and removes temporary files as it goes
        except OSError:
            continue
    return total


async def _watch_size(root: Path, limit: int, over: list[int], proc: asyncio.subprocess.Process) -> None:
    while proc.returncode is None:
        size = await asyncio.to_thread(folder_size, root)
        if size > limit:
            over.append(size)
            kill_group(proc)
            return
        await asyncio.sleep(SIZE_POLL_S)


async def list_refs(url: GitUrl, settings: SourceSettings, home: Path, timeout_s: float) -> RemoteRefs:
    git = _Git(url, settings, home)
    out = await git.run(["ls-remote", "--symref", "--", git.remote.url], timeout_s=timeout_s)
    refs: dict[str, str] = {}
    head = ""
    for line in out.splitlines():
        left, _, name = line.partition("\t")
        if left.startswith("ref: ") and name == "HEAD":
            head = left[5:].strip()
        elif name.endswith("^{}"):
            refs[name[:-3]] = left  # the commit an annotated tag points to
        elif name:
            refs.setdefault(name, left)
    return RemoteRefs(refs, head)


def resolve(refs: RemoteRefs, ref: str, url: GitUrl) -> Target:
    """The target for `ref` (already checked with `urls.check_ref`); `InvalidArgument` when the remote has
    no such branch or tag."""
    if not ref:
        if refs.head.startswith("refs/heads/"):
            return Target(refs.head, refs.head.removeprefix("refs/heads/"), refs.refs.get(refs.head, ""))
        if "HEAD" not in refs.refs:
            raise InvalidArgument(f"the repository {url} is empty (it has no default branch)")
        return Target("HEAD", "the default branch", refs.refs["HEAD"])
    if is_full_commit(ref):
        return Target(ref, f"commit {ref[:12]}", "")
    for full, label in ((ref, ref), (f"refs/heads/{ref}", ref), (f"refs/tags/{ref}", f"tag {ref}")):
        if full.startswith("refs/") and full in refs.refs:
            return Target(full, label.removeprefix("refs/heads/"), refs.refs[full])
    raise InvalidArgument(f"no branch, tag or commit {ref!r} in {url} (a commit must be given by its full id)")


async def clone(url: GitUrl, target: Target, dest: Path, settings: SourceSettings, home: Path) -> Cloned:
    """Fetch `target` with depth 1 into the new folder `dest` and check it out; the commit checked out.
    The time limit covers the fetch and the checkout together; the size limit, the whole of `dest`."""
    git = _Git(url, settings, home)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.clone_timeout_s

    def left() -> float:
        return max(0.1, deadline - loop.time())

    await asyncio.to_thread(dest.mkdir, mode=0o700)
    await git.run(["init", "-q", "--", str(dest)], timeout_s=left())
    fetch = ["-C", str(dest), "fetch", "-q", "--depth=1", "--no-tags", "--no-recurse-submodules", "--",
             git.remote.url, target.fetch]
    try:
        await git.run(fetch, timeout_s=left(), watch=dest, limit_bytes=settings.max_repo_bytes)
    except InvalidArgument as exc:
        if is_full_commit(target.fetch):
            raise InvalidArgument(
                f"no branch, tag or commit {target.fetch!r} in {url}, or the server does not allow fetching "
                f"that commit by its id: {exc}") from exc
        raise
    await git.run(["-C", str(dest), "checkout", "-q", "--detach", "FETCH_HEAD"], timeout_s=left(), watch=dest,
                  limit_bytes=settings.max_repo_bytes)
    commit = (await git.run(["-C", str(dest), "rev-parse", "HEAD"], timeout_s=left())).strip()
    log.info("repository cloned", extra={"url": url.redacted, "ref": target.label, "commit": commit})
    return Cloned(commit, target.label)
