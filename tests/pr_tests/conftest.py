"""Fixtures for pull request tests: real Git servers (git http-backend and git daemon, pushes enabled),
a project repository with files of every kind, diffs made the way the agent makes them, and an API-only
runner (real gRPC on its unix socket, embedded stores) whose completed tasks are put in directly.

`Project` is one bare repository on the servers; `diff_for` writes a change in a clone and returns the
agent-style diff (`git diff --cached --binary -M --full-index`); `expected_tree` applies a diff to a
checkout of a commit with `git apply --index` and returns `git write-tree`, the tree a pushed branch must
have.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from git_servers import GitDaemon, GitHttpServer, git, git_env, make_repo

from runner.client.connection import RunnerClient
from runner.composition import Runner, RunnerConfig
from runner.config import HomeLayout, LLMSettings
from runner.domain import models as m
from runner.pulls.settings import PullSettings
from runner.tasks.ids import new_task_id
from runner.tasks.service import TaskService

TENANT = "local"  # the unix socket's tenant
BINARY = bytes(range(256)) * 8
RENAMED_TEXT = "".join(f"line {i} of a file that moves\n" for i in range(40))
FILES: Mapping[str, bytes] = {
    "README.md": b"# project\n",
    "src/app.py": b"def greet():\n    return 'hello'\n",
    "src/util.py": b"".join(f"value_{i} = {i}\n".encode() for i in range(30)),
    "old.txt": b"to be deleted\n",
    "docs/moving.txt": RENAMED_TEXT.encode(),
    "assets/logo.bin": BINARY,
    "run.sh": b"#!/bin/sh\necho run\n",
}
# A change with every kind of file operation the agent's diff carries.
EVERY_KIND: Mapping[str, bytes | None] = {
    "src/app.py": b"def greet():\n    return 'hello, world'\n",
    "new/added.txt": b"a new file\n",
    "old.txt": None,
    "docs/moving.txt": None,
    "docs/moved.txt": (RENAMED_TEXT + "one more line\n").encode(),
    "assets/logo.bin": BINARY[::-1] + b"\x00\x01",
    "assets/new.bin": b"\x00\xff" * 300,
}


@dataclass
class Project:
    bare: Path
    name: str
    http_url: str
    git_url: str
    first: str  # the first commit
    head: str  # main's head (one commit after `first`)

    def ref(self, name: str) -> str:
        """The commit a branch points at, or "" when it does not exist."""
        out = git("for-each-ref", "--format=%(objectname)", f"refs/heads/{name}", cwd=self.bare)
        return out.strip()

    def tree(self, commit: str) -> str:
        return git("rev-parse", f"{commit}^{{tree}}", cwd=self.bare)

    def commit_on(self, branch: str, files: Mapping[str, bytes | None], message: str = "a change",
                  parent: str = "") -> str:
        """A commit with `files` changed (None: deleted) on top of `parent` (default: the branch's head),
        pushed to `branch` (forced)."""
        work = Path(tempfile.mkdtemp(prefix="cx-pr-work-"))
        try:
            git("clone", "-q", str(self.bare), str(work))
            git("checkout", "-q", "--detach", parent or self.ref(branch) or self.head, cwd=work)
            _write(work, files)
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", message, cwd=work)
            commit = git("rev-parse", "HEAD", cwd=work)
            git("push", "-q", "-f", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
            return commit
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def diff_for(self, base: str, files: Mapping[str, bytes | None], executable: tuple[str, ...] = ()) -> bytes:
        """The agent's diff of `files` (None: deleted) written on a checkout of `base`."""
        work = Path(tempfile.mkdtemp(prefix="cx-pr-diff-"))
        try:
            git("clone", "-q", "--no-checkout", str(self.bare), str(work))
            git("checkout", "-q", "--detach", base, cwd=work)
            _write(work, files)
            for rel in executable:
                (work / rel).chmod(0o755)
            git("add", "-A", cwd=work)
            return _git_bytes(["diff", "--cached", "--binary", "-M", "--full-index", "--no-color", base], work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def expected_tree(self, base: str, diff: bytes) -> str:
        """`git apply --index` of `diff` on a checkout of `base`, then `git write-tree`."""
        work = Path(tempfile.mkdtemp(prefix="cx-pr-expect-"))
        try:
            git("clone", "-q", "--no-checkout", str(self.bare), str(work))
            git("checkout", "-q", "--detach", base, cwd=work)
            git("apply", "--index", "--binary", "-", cwd=work, input=diff)
            return git("write-tree", cwd=work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _write(work: Path, files: Mapping[str, bytes | None]) -> None:
    for rel, content in files.items():
        target = work / rel
        if content is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


def _git_bytes(args: list[str], cwd: Path) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, env=git_env(), capture_output=True, check=True,
                          timeout=60).stdout


def make_project(base: Path, name: str, *, any_sha: bool = True) -> Project:
    """A bare repository `base/name` (`git_servers.make_repo`) with FILES (run.sh executable) in `first`
    and one more commit on main. Without `any_sha`, `first` is no ref's tip (tags and the feature branch
    removed) and the server does not allow wants of any commit by id."""
    repo = make_repo(base, name, files=FILES, executables=("run.sh",))
    if not any_sha:
        git("config", "--unset", "uploadpack.allowAnySHA1InWant", cwd=repo.path)
        git("tag", "-d", repo.tag, repo.light_tag, cwd=repo.path)
        git("branch", "-D", repo.branch, cwd=repo.path)
    return Project(bare=repo.path, name=name, http_url="", git_url="", first=repo.commits["first"],
                   head=repo.commits["head"])


@dataclass
class Servers:
    base: Path
    http: GitHttpServer
    daemon: GitDaemon

    def project(self, name: str, **kwargs: bool) -> Project:
        project = make_project(self.base, name, **kwargs)
        project.http_url = self.http.url(name)
        project.git_url = self.daemon.url(name)
        return project


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    base = Path(tempfile.mkdtemp(prefix="cx-pr-repos-"))
    daemon = GitDaemon(Path(tempfile.mkdtemp(prefix="cx-pr-daemon-")), base, receive_pack=True).start()
    http = GitHttpServer(base, receive_pack=True).start()
    try:
        yield Servers(base, http, daemon)
    finally:
        http.stop()
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def project(servers: Servers) -> Project:
    """A fresh repository per test."""
    return servers.project(f"p-{uuid.uuid4().hex[:12]}.git")


@dataclass
class Api:
    runner: Runner
    home: HomeLayout

    @property
    def service(self) -> TaskService:
        assert self.runner.service is not None
        return self.runner.service

    def client(self) -> RunnerClient:
        return RunnerClient(f"unix:{self.home.runner_socket}")

    async def completed_task(self, diff: bytes, base_commit: str, *, kind: m.SourceKind = m.SourceKind.SNAPSHOT,
                             git_url: str = "", git_ref: str = "", tenant: str = TENANT,
                             state: m.TaskState = m.TaskState.COMPLETED, summary: bytes = b"Changed the greeting.\n",
                             instruction: str = "Make the greeting friendlier\n\nand keep the rest") -> m.TaskRecord:
        """A finished task as the worker leaves it: diff.patch and summary.md in the BlobStore."""
        blobs = self.service.blobs
        manifest = await blobs.put_bytes(tenant, b"")
        artifacts = (m.ArtifactRef("diff.patch", await blobs.put_bytes(tenant, diff)),
                     m.ArtifactRef("summary.md", await blobs.put_bytes(tenant, summary)))
        record = m.TaskRecord(id=new_task_id(tenant, ""), tenant=tenant, instruction=instruction, model="m",
                              manifest_digest=manifest, state=state, artifacts=artifacts, files_changed=3,
                              source=m.TaskSource(kind=kind, git_url=git_url, git_ref=git_ref,
                                                  base_commit=base_commit))
        return await self.service.store.create(record)


def api_fixture(settings: Callable[[], PullSettings]) -> Callable[..., AsyncIterator[Api]]:
    """A fixture factory: an API-only runner with the pull settings `settings()` gives."""

    async def fixture(short_tmp: Path) -> AsyncIterator[Api]:
        home = HomeLayout(short_tmp / "home")
        config = RunnerConfig(home=home, llm=LLMSettings(None, None, "m"), run_worker=False, pulls=settings())
        async with Runner(config) as runner:
            yield Api(runner, home)

    return fixture


api = pytest.fixture(api_fixture(PullSettings))
