"""Pushing the commit to `refs/heads/<branch>`, and who may overwrite what.

- No such branch on the remote: it is created. The push carries `--force-with-lease=<ref>:` (expect
  absent), so a branch someone made meanwhile is not overwritten.
- The branch already holds exactly this commit: nothing is pushed (a repeated call).
- Its head is a commit made for the same task (its `Codex-Task` trailer names the task): a re-run may
  replace it (e.g. after the base moved); `--force-with-lease=<ref>:<that commit>`, so a commit pushed by
  someone else meanwhile is never lost.
- Its head is an ancestor of the new commit (say, a branch made at the base): a fast-forward.
- Anything else is someone else's work: refused with a `FailedPrecondition` that says to pick another
  branch name.

A rejected push (a hook, a protected branch, missing rights) becomes an error quoting the remote.
"""

from __future__ import annotations

import logging

from runner.domain.errors import FailedPrecondition
from runner.pulls.commits import task_of
from runner.pulls.fetching import fetch_branch
from runner.pulls.git import Git, GitCommandError, classify
from runner.sources.git_command import Remote

log = logging.getLogger(__name__)


async def push(git: Git, remote: Remote, commit: str, branch: str, current: str, task_id: str) -> bool:
    """Push `commit` to `branch` whose remote head is `current` ("" if absent); False when the branch
    already held it."""
    ref = f"refs/heads/{branch}"
    if current == commit:
        return False
    if current:
        await fetch_branch(git, remote, branch)
        ours = await task_of(git, current) == task_id
        ancestor = (await git.run("merge-base", "--is-ancestor", current, commit, check=False)).returncode == 0
        if not (ours or ancestor):
            raise FailedPrecondition(
                f"{remote.display} already has a branch {branch!r} ({current[:12]}) with commits not made for task "
                f"{task_id}; pick another branch name, or delete that branch if it is no longer needed")
    try:
        await git.run("push", "--porcelain", "--no-verify", f"--force-with-lease={ref}:{current}", remote.url,
                      f"{commit}:{ref}")
    except GitCommandError as exc:
        raise classify(exc, f"pushing {branch}", remote) from None
    log.info("branch pushed", extra={"remote": remote.display, "branch": branch, "commit": commit})
    return True
