"""CreateTask with Git and zip sources over the real gRPC API (embedded adapters, no worker): what is
checked at once, and what a client sees of the source (never the credentials)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from servers import free_port

from runner.client.connection import RunnerClient
from runner.client.upload import upload_file
from runner.composition import Runner, RunnerConfig
from runner.config import HomeLayout, LLMSettings
from runner.domain import models as m
from runner.domain.errors import FailedPrecondition, InvalidArgument

from .conftest import HTTP_SECRET, GitHosts
from .zips import build, entry

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def client(short_tmp: Path) -> AsyncIterator[RunnerClient]:
    home = HomeLayout(short_tmp / "home")
    config = RunnerConfig(home=home, llm=LLMSettings(None, None, "test-model"), run_worker=False)
    async with Runner(config), RunnerClient(f"unix:{home.runner_socket}") as connected:
        yield connected


async def _upload(client: RunnerClient, tmp_path: Path, data: bytes) -> m.Digest:
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    digest, _ = await upload_file(client, path, 1 << 30)
    return digest


async def test_git_task_is_queued_with_the_redacted_url(client: RunnerClient, git_hosts: GitHosts,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    url = git_hosts.http.url(git_hosts.repo.name, credentials=True)
    task = await client.create_task("fix it", git_url=url, git_ref="feature", request_id="req-git-1")
    assert task.state is m.TaskState.QUEUED and task.manifest_digest is None
    assert task.source == m.TaskSource(m.SourceKind.GIT, git_url=git_hosts.http.url(git_hosts.repo.name),
                                       git_ref="feature")
    again = await client.create_task("fix it", git_url=url, git_ref="feature", request_id="req-git-1")
    assert again.id == task.id  # idempotent by request id
    listed = await client.list_tasks()
    fetched = await client.get_task(task.id)
    for shown in (task, again, fetched, *listed):
        assert HTTP_SECRET not in repr(shown)
    assert HTTP_SECRET not in caplog.text


async def test_git_problems_are_refused_at_once(client: RunnerClient, git_hosts: GitHosts) -> None:
    url = git_hosts.daemon.url(git_hosts.repo.name)
    with pytest.raises(InvalidArgument, match=f"no branch, tag or commit 'nope' in {url}"):
        await client.create_task("x", git_url=url, git_ref="nope")
    with pytest.raises(InvalidArgument, match="not a valid branch, tag or commit name"):
        await client.create_task("x", git_url=url, git_ref="--upload-pack=touch /tmp/x")
    with pytest.raises(FailedPrecondition, match="cannot reach the Git server"):
        await client.create_task("x", git_url=f"git://127.0.0.1:{free_port()}/repo.git")
    with pytest.raises(InvalidArgument, match="CODEX_SYS_GIT_ALLOW_LOCAL"):
        await client.create_task("x", git_url=f"file://{git_hosts.repo.path}")
    with pytest.raises(InvalidArgument, match="remote helper"):
        await client.create_task("x", git_url="ext::sh%20-c%20touch%20/tmp/pwned")
    with pytest.raises(FailedPrecondition, match="refused access") as refused:
        await client.create_task("x", git_url=git_hosts.http.url(git_hosts.repo.name, credentials=True).replace(
            HTTP_SECRET, "not-the-" + HTTP_SECRET))
    assert HTTP_SECRET not in str(refused.value)
    assert await client.list_tasks() == []


async def test_zip_tasks(client: RunnerClient, tmp_path: Path) -> None:
    good = await _upload(client, tmp_path, build([entry("p/calc.py", b"x = 1\n")]))
    task = await client.create_task("x", zip_digest=good)
    assert task.source == m.TaskSource(m.SourceKind.ZIP, zip_digest=good) and task.manifest_digest is None
    hostile = await _upload(client, tmp_path, build([entry("../../evil.sh", b"rm -rf /")]))
    with pytest.raises(InvalidArgument, match=r"zip archive refused: entry '../../evil.sh' .*zip-slip"):
        await client.create_task("x", zip_digest=hostile)
    with pytest.raises(FailedPrecondition, match="has not been uploaded"):
        await client.create_task("x", zip_digest=m.Digest.of(b"never uploaded"))
    assert [t.id for t in await client.list_tasks()] == [task.id]
