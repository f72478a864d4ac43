"""Pull requests on a GitHub remote: the push authenticates with the token (as an `x-access-token` Basic
header, the way GitHub documents git over HTTPS), then the REST call opens the pull request.

GitHub itself is not reachable from the test machines: `FakeGitHub` is a local server that checks every
request as GitHub documents it and answers in GitHub's shapes; the Git side is a real `git http-backend`
that demands the token."""

from __future__ import annotations

import base64
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from git_servers import ArgvRecorder, GitHttpServer

from runner.composition import Runner, RunnerConfig
from runner.config import HomeLayout, LLMSettings
from runner.domain.errors import FailedPrecondition, NotFound, PermissionDenied, Unavailable
from runner.pulls.github import GitHubApi, GitHubRepo
from runner.pulls.models import PullRequestRequest
from runner.pulls.settings import PullSettings

from .conftest import Api, Project, Servers
from .github_api import FakeGitHub

pytestmark = pytest.mark.timeout(60)

TOKEN = "ghp_" + "T0kenValue" * 4


@dataclass
class GitHubSide:
    api: Api
    fake: FakeGitHub
    http: GitHttpServer
    project: Project

    @property
    def remote(self) -> str:
        return self.http.url(self.project.name)

    @property
    def repo(self) -> str:
        return self.project.name.removesuffix(".git")


@pytest.fixture
def token_git(servers: Servers) -> Iterator[GitHttpServer]:
    with GitHttpServer(servers.base, auth=("x-access-token", TOKEN), receive_pack=True) as http:
        yield http


@pytest.fixture
async def github(servers: Servers, token_git: GitHttpServer, short_tmp: Path) -> AsyncIterator[GitHubSide]:
    project = servers.project(f"acme/widgets-{uuid.uuid4().hex[:8]}.git")
    repo = project.name.removesuffix(".git")
    fake = await FakeGitHub(token=TOKEN, repos={repo: True, "acme/readonly": False},
                            branches={repo: {"main"}, "acme/readonly": {"main"}}).start()
    settings = PullSettings(github_hosts={f"127.0.0.1:{token_git.port}": fake.url})
    home = HomeLayout(short_tmp / "home")
    try:
        async with Runner(RunnerConfig(home=home, llm=LLMSettings(None, None, "m"), run_worker=False,
                                       pulls=settings)) as runner:
            yield GitHubSide(Api(runner, home), fake, token_git, project)
    finally:
        await fake.close()


def _secrets() -> list[str]:
    return [TOKEN, base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()]


async def test_with_a_token_the_branch_is_pushed_and_the_pull_request_opened_as_github_documents(
        github: GitHubSide, caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    caplog.set_level(logging.DEBUG)
    # Every git process and remote helper is recorded with its arguments (what `ps` shows to every user).
    recorder = ArgvRecorder(tmp_path / "recorder")
    monkeypatch.setenv("PATH", recorder.path)
    project = github.project
    diff = project.diff_for(project.head, {"src/app.py": b"def greet():\n    return 'hey'\n"})
    task = await github.api.completed_task(diff, project.head, summary=b"I changed the greeting.\n")

    async with github.api.client() as client:
        result = await client.create_pull_request(PullRequestRequest(
            task.id, github.remote, "codex/hey", title="Say hey", github_token=TOKEN, draft=True))
        again = await client.create_pull_request(PullRequestRequest(
            task.id, github.remote, "codex/hey", title="Say hey", github_token=TOKEN, draft=True))

    assert result.pull_request_url == f"https://github.example/{github.repo}/pull/1"
    assert result.pull_request_number == 1
    assert again == result  # the 422 "already exists" led to the open pull request
    assert project.ref("codex/hey") == result.commit
    assert github.fake.violations == []
    posts = [r for r in github.fake.requests if r["method"] == "POST"]
    assert [r["path"] for r in posts] == [f"/repos/{github.repo}/pulls"] * 2
    body = posts[0]["json"]
    assert body["title"] == "Say hey" and body["head"] == "codex/hey" and body["base"] == "main"
    assert body["draft"] is True
    assert body["body"].startswith("I changed the greeting.") and task.id in body["body"]
    lookups = [r for r in github.fake.requests if r["method"] == "GET"]
    assert lookups[0]["query"] == {"head": "acme:codex/hey", "state": "open"}
    # The server demands the token on every request: the push got through with it.
    assert any(r.startswith("POST ") and r.endswith("/git-receive-pack") for r in github.http.requests)
    for secret in _secrets():
        assert secret not in caplog.text
    lines = recorder.lines()
    assert any(line.startswith("git push") and github.remote in line for line in lines), lines
    assert not [line for line in lines if any(secret in line for secret in _secrets())]


async def test_a_wrong_token_is_refused_by_the_remote_and_never_shown(github: GitHubSide,
                                                                        caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    wrong = "ghp_wrongTokenValue1234567890"
    project = github.project
    task = await github.api.completed_task(project.diff_for(project.head, {"README.md": b"# x\n"}), project.head)
    async with github.api.client() as client:
        with pytest.raises(PermissionDenied) as caught:
            await client.create_pull_request(PullRequestRequest(task.id, github.remote, "codex/x",
                                                                github_token=wrong))
    assert "refused the credentials" in str(caught.value)
    for secret in (wrong, base64.b64encode(f"x-access-token:{wrong}".encode()).decode()):
        assert secret not in str(caught.value) and secret not in caplog.text
    assert github.fake.requests == []  # no pull request call after a failed push


async def test_without_a_token_the_branch_is_pushed_and_no_pull_request_opened(servers: Servers, api: Api):
    # The unauthenticated server is not a GitHub host in these settings: the push alone happens.
    project = servers.project(f"acme/plain-{uuid.uuid4().hex[:8]}.git")
    task = await api.completed_task(project.diff_for(project.head, {"README.md": b"# y\n"}), project.head)
    async with api.client() as client:
        result = await client.create_pull_request(PullRequestRequest(task.id, project.http_url, "codex/y",
                                                                     github_token=TOKEN))
    assert result.pull_request_url == "" and project.ref("codex/y") == result.commit


@pytest.mark.parametrize(("token", "repo", "base", "error", "words"), [
    ("ghp_not_the_right_one", "widgets", "main", PermissionDenied, "GitHub refused the token (401: Bad credentials)"),
    (TOKEN, "readonly", "main", PermissionDenied, "lacks rights to open pull requests in acme/readonly"),
    (TOKEN, "nothing-here", "main", NotFound, "has no repository acme/nothing-here"),
    (TOKEN, "widgets", "release", FailedPrecondition, "Validation Failed"),
])
async def test_github_refusals_become_errors_that_say_what_to_do(token: str, repo: str, base: str,
                                                                 error: type[Exception], words: str):
    fake = await FakeGitHub(token=TOKEN, repos={"acme/widgets": True, "acme/readonly": False},
                            branches={"acme/widgets": {"main"}, "acme/readonly": {"main"}}).start()
    try:
        api = GitHubApi(fake.url, token, timeout_s=10)
        with pytest.raises(error) as caught:
            await api.create_pull(GitHubRepo("github.com", "acme", repo), title="t", head="codex/z", base=base,
                                  body="b", draft=False)
        assert words in str(caught.value)
        assert token not in str(caught.value)
        assert fake.violations == []
    finally:
        await fake.close()


async def test_an_unreachable_api_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = GitHubApi(f"http://127.0.0.1:{port}", TOKEN, timeout_s=5)
    with pytest.raises(Unavailable) as caught:
        await api.create_pull(GitHubRepo("github.com", "acme", "widgets"), title="t", head="h", base="main", body="",
                              draft=False)
    assert "cannot be reached" in str(caught.value) and TOKEN not in str(caught.value)
