"""`PullRequestService`: a COMPLETED task's diff as a branch on a Git remote, and on GitHub a pull request.

The call checks everything it can before touching the network: the task (the caller's own; another
tenant's is NotFound), its state, that it has a diff and a base commit, the branch names, and the
remote URL against the same policy as Git task sources (`runner.sources.urls`: `file://` and local paths
only when the operator allows them). Then, in a private temporary repository (`runner.pulls.git`):
fetch the base (`fetching`), commit the diff (`commits`), replay it when the base branch has moved,
push (`pushing`), and with a GitHub token and a GitHub remote open the pull request (`github`) with the
task's `summary.md` as its body.

Base commits by source kind: a Git-source task has the commit the worker cloned; a snapshot task has
the commit its workspace was on when the client knew it (`base_commit` of CreateTask); a zip task has
none, and is refused: nothing says which history its files belong to.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from runner.domain import models as m
from runner.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from runner.pulls import commits, fetching, pushing
from runner.pulls.branches import check_branch
from runner.pulls.git import Git, GitOptions
from runner.pulls.github import GitHubApi, GitHubRepo, parse_repo
from runner.pulls.models import PullRequestRequest, PullRequestResult
from runner.pulls.settings import PullSettings
from runner.sources.git_command import Remote, remote_of
from runner.sources.settings import SourceSettings
from runner.sources.urls import check_git_url, is_full_commit
from runner.tasks.service import TaskService

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 60_000  # GitHub takes up to 65,536 characters
MAX_SUMMARY_BYTES = 1 << 20


class PullRequestService:
    def __init__(self, tasks: TaskService, settings: PullSettings, sources: SourceSettings,
                 work_root: Path | None = None) -> None:
        self._tasks = tasks
        self._settings = settings
        self._sources = sources
        self._work_root = work_root
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))

    async def create(self, tenant: str, req: PullRequestRequest) -> PullRequestResult:
        record = await self._tasks.get(tenant, req.task_id)
        if record.state is not m.TaskState.COMPLETED:
            raise FailedPrecondition(f"task {record.id} is {record.state.value}; only a COMPLETED task's diff "
                                     "becomes a pull request")
        diff_ref = record.artifact("diff.patch")
        if diff_ref is None or diff_ref.digest.size == 0:
            raise FailedPrecondition(f"task {record.id} changed nothing; there is no diff to push")
        base_commit = _base_commit(record)
        branch = check_branch(req.branch.strip())
        base_branch = check_branch(req.base_branch.strip(), "base branch") if req.base_branch.strip() else ""
        remote_url = req.remote_url.strip() or (record.source.git_url if record.source.kind is m.SourceKind.GIT
                                                 else "")
        if not remote_url:
            raise InvalidArgument("give the remote to push to (a Git URL); only a task made from a Git URL "
                                  "defaults to it")
        checked = check_git_url(remote_url, allow_local=self._sources.allow_local)
        github = self._github_of(checked.url)
        token = req.github_token.strip() if github is not None else ""
        remote = remote_of(checked, github_token=token)
        source = self._source_remote(record, remote)
        title = _title(req.title or record.instruction)
        diff = await self._tasks.blobs.get_bytes(tenant, diff_ref.digest)
        log.info("pull request requested", extra={"task_id": record.id, "remote": remote.display, "branch": branch,
                                                   "github": github is not None and bool(token)})
        async with self._slots:
            pushed = await self._push(record, remote, source, branch, base_branch, base_commit, title, diff)
        if github is None or not token:
            return pushed.result
        api_url = self._settings.api_url(github.host)
        assert api_url is not None
        body = await self._body(tenant, record)
        pull = await GitHubApi(api_url, token, self._settings.api_timeout_s).create_pull(
            github, title=title, head=branch, base=pushed.base_branch, body=body, draft=req.draft)
        return replace(pushed.result, pull_request_url=pull.url, pull_request_number=pull.number)

    def _github_of(self, url: str) -> GitHubRepo | None:
        repo = parse_repo(url)
        if repo is None or self._settings.api_url(repo.host) is None:
            return None
        return repo

    def _source_remote(self, record: m.TaskRecord, remote: Remote) -> Remote | None:
        """The task's own Git URL, a last place to find its base commit (see `fetching`)."""
        if record.source.kind is not m.SourceKind.GIT or not record.source.git_url:
            return None
        try:
            source = remote_of(check_git_url(record.source.git_url, allow_local=self._sources.allow_local))
        except InvalidArgument:
            return None  # the policy changed since the task ran: not a place to fetch from now
        return None if source.url == remote.url else source

    async def _push(self, record: m.TaskRecord, remote: Remote, source: Remote | None, branch: str,
                    base_branch: str, base_commit: str, title: str, diff: bytes) -> _Pushed:
        work = await asyncio.to_thread(tempfile.mkdtemp, prefix="codex-pr-", dir=self._work_root)
        try:
            root = Path(work)
            repo = root / "repo"
            repo.mkdir()
            git = Git(repo, root, GitOptions(timeout_s=self._settings.git_timeout_s,
                                             allow_file=self._sources.allow_local),
                      remotes=[remote, *([source] if source else [])])
            await git.run("init", "--quiet")
            source_ref = record.source.git_ref.removeprefix("refs/heads/") if record.source.kind is m.SourceKind.GIT \
                else ""
            if source_ref and is_full_commit(source_ref):
                source_ref = ""
            refs = await fetching.remote_refs(git, remote, branch, base_branch, source_ref)
            await fetching.fetch_base(git, remote, refs, base_commit, source)
            identity = commits.Identity(self._settings.author_name, self._settings.author_email,
                                        f"@{int(record.updated_at or time.time())} +0000")
            message = commits.message_of(title, record.id)
            commit = await commits.commit_diff(git, base_commit, diff, message, identity)
            rebased = refs.base_head != base_commit
            if rebased:
                commit = await commits.replay(git, commit, refs.base_head, refs.base_branch, message, identity)
            await pushing.push(git, remote, commit, branch, refs.branch_head, record.id)
            parent = refs.base_head if rebased else base_commit
            return _Pushed(PullRequestResult(branch=branch, commit=commit, base_commit=parent, rebased=rebased),
                           refs.base_branch)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _body(self, tenant: str, record: m.TaskRecord) -> str:
        summary = ""
        ref = record.artifact("summary.md")
        if ref is not None and 0 < ref.digest.size <= MAX_SUMMARY_BYTES:
            try:
                summary = (await self._tasks.blobs.get_bytes(tenant, ref.digest)).decode("utf-8", "replace").strip()
            except NotFound:
                summary = ""
        footer = f"---\nMade by codex-sys from task `{record.id}`: {_title(record.instruction)}"
        if len(summary) > MAX_BODY_CHARS:
            summary = summary[:MAX_BODY_CHARS] + "\n\n… (the summary is cut here)"
        return f"{summary}\n\n{footer}\n" if summary else f"{footer}\n"


@dataclass(frozen=True, slots=True)
class _Pushed:
    result: PullRequestResult
    base_branch: str


def _base_commit(record: m.TaskRecord) -> str:
    source = record.source
    if source.kind is m.SourceKind.ZIP:
        raise FailedPrecondition(f"task {record.id} was made from a zip archive, which has no Git history to base "
                                 "a branch on; apply its diff yourself (codex-sys apply) in a clone and push that")
    commit = source.base_commit.strip().lower()
    if not commit:
        raise FailedPrecondition(
            f"task {record.id} has no base commit (its workspace was not a git repository, or the client did not "
            "send its HEAD); apply its diff yourself (codex-sys apply) in a clone and push that")
    if not is_full_commit(commit):
        raise FailedPrecondition(f"task {record.id} has base commit {commit[:80]!r}, which is not a full commit id")
    return commit


def _title(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "") or "Changes made by codex-sys"
    return line if len(line) <= MAX_TITLE_CHARS else line[:MAX_TITLE_CHARS - 1].rstrip() + "…"
