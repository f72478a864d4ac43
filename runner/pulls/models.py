"""What a pull request call asks for and what it answers, as the API and the CLI exchange them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PullRequestRequest:
    task_id: str
    # Empty: the task's own Git URL (a Git-source task only).
    remote_url: str
    branch: str
    # Empty: the task's ref when the remote has a branch of that name, else the remote's default branch.
    base_branch: str = ""
    # Empty: the first line of the task's instruction.
    title: str = ""
    # Used for this call only; never stored, logged or returned.
    github_token: str = ""
    draft: bool = False

    def __repr__(self) -> str:  # the token must not reach a log through a repr
        return (f"PullRequestRequest(task_id={self.task_id!r}, branch={self.branch!r}, "
                f"base_branch={self.base_branch!r}, draft={self.draft})")


@dataclass(frozen=True, slots=True)
class PullRequestResult:
    branch: str
    commit: str
    base_commit: str
    # The base branch had moved past the task's base commit: the change was replayed onto its head.
    rebased: bool = False
    # Empty when no pull request was opened (no token, or not a GitHub remote).
    pull_request_url: str = ""
    pull_request_number: int = 0
