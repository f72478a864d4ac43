"""Finding the base branch on the remote and fetching the commits a pull request is built from.

One `git ls-remote` (protocol v2, so only the asked-for refs travel) tells the base branch's head, the
remote's default branch and whether the target branch exists. Then, shallowly:

1. the base branch's head (`--depth=1`): when it is the task's base commit, that is all;
2. otherwise the base commit by its id (`git fetch --depth=1 REMOTE SHA`): servers that speak protocol
   v2 with `uploadpack.allowReachableSHA1InWant` or `allowAnySHA1InWant` (GitHub, GitLab, most hosted
   servers) answer it;
3. a server that refuses wants by id: the base branch is deepened (50, 500, 5000 commits, then all of
   it) until the base commit shows up in its history;
4. still missing (the commit was never pushed to this remote, e.g. a fork): the same by-id fetch from
   the task's own Git URL, when it has one.

A commit found nowhere is a `FailedPrecondition` that says to push it first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from runner.domain.errors import FailedPrecondition
from runner.pulls.git import Git, GitCommandError, classify
from runner.sources.git_command import Remote

log = logging.getLogger(__name__)

DEEPEN_STEPS = (50, 500, 5000)


@dataclass(frozen=True, slots=True)
class RemoteRefs:
    base_branch: str
    base_head: str
    # The target branch's current commit, or "" when the remote has no such branch.
    branch_head: str


def _parse_ls_remote(text: str) -> tuple[dict[str, str], str]:
    """(ref -> commit, the branch HEAD points at or "")."""
    refs: dict[str, str] = {}
    head_target = ""
    for line in text.splitlines():
        left, _, right = line.partition("\t")
        if left.startswith("ref: ") and right == "HEAD":
            head_target = left.removeprefix("ref: ").removeprefix("refs/heads/")
        elif right:
            refs[right] = left
    return refs, head_target


async def remote_refs(git: Git, remote: Remote, branch: str, base_branch: str, source_ref: str) -> RemoteRefs:
    """The base branch (given, else `source_ref` when the remote has such a branch, else the remote's
    default branch) with its head, and the target branch's head."""
    wanted = ["HEAD", f"refs/heads/{branch}"]
    wanted += [f"refs/heads/{name}" for name in (base_branch, source_ref) if name]
    try:
        result = await git.run("ls-remote", "--symref", remote.url, *wanted)
    except GitCommandError as exc:
        raise classify(exc, "listing the branches", remote) from None
    refs, default = _parse_ls_remote(result.text)
    if base_branch:
        chosen = base_branch
    elif source_ref and f"refs/heads/{source_ref}" in refs:
        chosen = source_ref
    elif default:
        chosen = default
    else:
        raise FailedPrecondition(f"{remote.display} has no default branch (is it empty?); name the base branch "
                                 "the pull request is for")
    head = refs.get(f"refs/heads/{chosen}") or (refs.get("HEAD") if chosen == default else None)
    if head is None:
        raise FailedPrecondition(f"{remote.display} has no branch {chosen!r} to base the change on; push the base "
                                 "branch first or name another one")
    if chosen == branch:
        raise FailedPrecondition(f"the branch to push ({branch!r}) is the base branch itself; name a new branch")
    return RemoteRefs(base_branch=chosen, base_head=head, branch_head=refs.get(f"refs/heads/{branch}", ""))


async def has_commit(git: Git, commit: str) -> bool:
    result = await git.run("cat-file", "-e", f"{commit}^{{commit}}", check=False)
    return result.returncode == 0


async def fetch_base(git: Git, remote: Remote, refs: RemoteRefs, base_commit: str,
                     source: Remote | None) -> None:
    """Fetch the base branch's head and the task's base commit into `git`'s repository."""
    tracking = f"refs/pulls/base/{refs.base_branch}"
    try:
        await git.run("fetch", "--quiet", "--no-tags", "--depth=1", remote.url,
                      f"+refs/heads/{refs.base_branch}:{tracking}")
    except GitCommandError as exc:
        raise classify(exc, f"fetching {refs.base_branch}", remote) from None
    if await has_commit(git, base_commit):
        return
    if await _fetch_id(git, remote, base_commit):
        return
    for depth in (*DEEPEN_STEPS, 0):
        depth_arg = [f"--depth={depth}"] if depth else (["--unshallow"] if await _shallow(git) else [])
        if not depth_arg:
            break
        result = await git.run("fetch", "--quiet", "--no-tags", *depth_arg, remote.url,
                               f"+refs/heads/{refs.base_branch}:{tracking}", check=False)
        if await has_commit(git, base_commit):
            log.info("base commit found by deepening", extra={"depth": depth or "all"})
            return
        if result.returncode != 0:
            break
    if source is not None and await _fetch_id(git, source, base_commit):
        return
    raise FailedPrecondition(
        f"the task's base commit {base_commit[:12]} is not on {remote.display} (branch {refs.base_branch} and its "
        f"history)" + (f" nor fetchable from the task's source {source.display}" if source else "")
        + "; push that commit to the remote first, then try again")


async def _fetch_id(git: Git, remote: Remote, commit: str) -> bool:
    result = await git.run("fetch", "--quiet", "--no-tags", "--depth=1", remote.url, commit, check=False)
    if result.returncode != 0:
        # Expected from servers that refuse wants by id; the fallbacks follow.
        log.debug("fetch by id refused", extra={"remote": remote.display, "error": result.err[-300:]})
        return False
    return await has_commit(git, commit)


async def _shallow(git: Git) -> bool:
    result = await git.run("rev-parse", "--is-shallow-repository", check=False)
    return result.text == "true"


async def fetch_branch(git: Git, remote: Remote, branch: str) -> None:
    """The target branch's head (to see whose it is)."""
    try:
        await git.run("fetch", "--quiet", "--no-tags", "--depth=1", remote.url,
                      f"+refs/heads/{branch}:refs/pulls/existing")
    except GitCommandError as exc:
        raise classify(exc, f"fetching the existing branch {branch}", remote) from None
