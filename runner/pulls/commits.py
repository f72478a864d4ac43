"""Making the pull request's commit: the task's diff on its base commit, replayed onto a moved base.

The commit is built without a work tree: the base commit's tree is read into a private index,
`git apply --cached --binary` applies the diff to it (new, deleted, renamed, binary files and mode
changes alike, as the agent's `git diff --binary --full-index` wrote them), `git write-tree` and
`git commit-tree` make the commit. Its author and committer are the configured identity and its dates
are the task's end time, so the same task on the same base always gives the same commit id: a second
call finds the branch already there and pushes nothing.

When the base branch has moved, the commit is cherry-picked onto the branch's head in a detached work
tree (git's merge machinery, rename detection included, with the task's base commit as the merge
base). A conflict is a `FailedPrecondition` that names the conflicting files.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.domain.errors import FailedPrecondition
from runner.pulls.git import Git, GitCommandError

TRAILER = "Codex-Task"
MAX_NAMED_FILES = 20


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    email: str
    date: str  # git's "@<unix seconds> +0000" form

    def env(self) -> dict[str, str]:
        return {"GIT_AUTHOR_NAME": self.name, "GIT_AUTHOR_EMAIL": self.email, "GIT_AUTHOR_DATE": self.date,
                "GIT_COMMITTER_NAME": self.name, "GIT_COMMITTER_EMAIL": self.email,
                "GIT_COMMITTER_DATE": self.date}


def message_of(title: str, task_id: str) -> str:
    return f"{title}\n\n{TRAILER}: {task_id}\n"


async def task_of(git: Git, commit: str) -> str:
    """The task id in a commit's `Codex-Task` trailer, or ""."""
    result = await git.run("log", "-1", f"--format=%(trailers:key={TRAILER},valueonly,separator=%x2C)", commit,
                           "--", check=False)
    return result.text.split(",")[0].strip() if result.returncode == 0 else ""


async def tree_of(git: Git, commit: str) -> str:
    return (await git.run("rev-parse", f"{commit}^{{tree}}")).text


async def commit_diff(git: Git, base_commit: str, diff: bytes, message: str, identity: Identity) -> str:
    """The commit of `diff` applied to `base_commit`."""
    index = {"GIT_INDEX_FILE": str(git.repo / ".git" / "pulls-index")}
    await git.run("read-tree", base_commit, env=index)
    try:
        await git.run("apply", "--cached", "--binary", "--whitespace=nowarn", "-", input=diff, env=index)
    except GitCommandError as exc:
        raise FailedPrecondition(
            f"the task's diff does not apply to its base commit {base_commit[:12]} (was the workspace changed "
            f"after that commit without committing?): {exc.message}") from None
    tree = (await git.run("write-tree", env=index)).text
    if tree == await tree_of(git, base_commit):
        raise FailedPrecondition(f"the task's diff changes nothing in {base_commit[:12]}; there is nothing to push")
    return await _commit_tree(git, tree, base_commit, message, identity)


async def _commit_tree(git: Git, tree: str, parent: str, message: str, identity: Identity) -> str:
    result = await git.run("commit-tree", tree, "-p", parent, "-F", "-", input=message.encode(),
                           env=identity.env())
    return result.text


async def replay(git: Git, commit: str, onto: str, base_branch: str, message: str, identity: Identity) -> str:
    """`commit` cherry-picked onto `onto` (the base branch's head)."""
    env = identity.env()
    await git.run("checkout", "--quiet", "--detach", "--force", onto, env=env)
    result = await git.run("cherry-pick", "--no-commit", "--allow-empty", commit, check=False, env=env)
    if result.returncode != 0:
        unmerged = await git.run("diff", "--name-only", "--diff-filter=U", "-z", check=False)
        files = [f for f in unmerged.out.decode("utf-8", "replace").split("\0") if f]
        if not files:
            raise FailedPrecondition(f"the change cannot be replayed onto {base_branch} "
                                     f"({onto[:12]}): {result.err.strip()[-2000:]}")
        named = ", ".join(files[:MAX_NAMED_FILES]) + (f" and {len(files) - MAX_NAMED_FILES} more"
                                                       if len(files) > MAX_NAMED_FILES else "")
        raise FailedPrecondition(
            f"{base_branch} has moved past the task's base commit and its changes conflict with the task's diff "
            f"in: {named}. Run the task again on the current {base_branch}, or resolve it yourself: apply the "
            "task's diff (codex-sys apply) on a checkout of the task's base commit, then merge or rebase")
    tree = (await git.run("write-tree")).text
    if tree == await tree_of(git, onto):
        raise FailedPrecondition(f"{base_branch} ({onto[:12]}) already contains the task's change; there is "
                                 "nothing to push")
    return await _commit_tree(git, tree, onto, message, identity)
