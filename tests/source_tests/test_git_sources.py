"""Git task sources against a real git daemon and a real git http-backend: clones by branch, tag, commit and
default branch; unknown refs, unreachable hosts, repositories over the limit and local URLs refused with
a reason; credentials in URLs used but never shown, nor put on any git command line."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from git_servers import ArgvRecorder
from servers import free_port

from runner.adapters.embedded import FsBlobStore
from runner.domain import models as m
from runner.domain.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from runner.sources import checks
from runner.sources.fetcher import SourceFetcher
from runner.sources.ingest import IngestLimits
from runner.sources.settings import SourceSettings

from .conftest import HTTP_SECRET, HTTP_USER, GitHosts

pytestmark = pytest.mark.timeout(60)
TENANT = "tenant-a"
LIMITS = IngestLimits(max_files=1000, max_total_bytes=64 << 20, max_file_bytes=32 << 20)


def _record(url: str, ref: str = "") -> m.TaskRecord:
    return m.TaskRecord(id="t-git", tenant=TENANT, instruction="x", model="m", manifest_digest=None,
                        source=m.TaskSource(m.SourceKind.GIT, git_url=url, git_ref=ref))


async def _fetch(tmp_path: Path, blobs: FsBlobStore, settings: SourceSettings, url: str, ref: str = ""):
    return await SourceFetcher(settings, tmp_path / "sources", LIMITS).fetch(_record(url, ref), 1, blobs)


@pytest.mark.parametrize(("ref", "commit", "label", "has_feature", "has_changes"), [
    ("", "head", "main", False, True),
    ("feature", "feature", "feature", True, False),
    ("v1", "first", "tag v1", False, False),
    ("v1-light", "first", "tag v1-light", False, False),
    ("COMMIT", "first", "commit ", False, False),
    ("refs/heads/feature", "feature", "feature", True, False),
])
async def test_clone_by_ref(ref: str, commit: str, label: str, has_feature: bool, has_changes: bool,
                            git_hosts: GitHosts, tmp_path: Path, blobs: FsBlobStore,
                            settings: SourceSettings) -> None:
    repo = git_hosts.repo
    ref = repo.commits["first"] if ref == "COMMIT" else ref
    fetched = await _fetch(tmp_path, blobs, settings, git_hosts.daemon.url(repo.name), ref)
    assert fetched.base_commit == repo.commits[commit]
    paths = {e.path: e.kind for e in fetched.manifest.entries}
    assert paths["README.md"] is m.FileKind.FILE and paths["bin/run.sh"] is m.FileKind.EXECUTABLE
    assert ("feature.txt" in paths) is has_feature and ("CHANGES.md" in paths) is has_changes
    assert not any(p.startswith(".git/") for p in paths)
    assert f"at {label}" in fetched.note and repo.commits[commit][:12] in fetched.note
    assert not await blobs.find_missing(TENANT, [e.digest for e in fetched.manifest.entries])
    assert list((tmp_path / "sources").iterdir()) == []


async def test_unknown_ref_is_refused_at_create_and_in_the_worker(git_hosts: GitHosts, tmp_path: Path,
                                                                  blobs: FsBlobStore, settings: SourceSettings) -> None:
    url = git_hosts.daemon.url(git_hosts.repo.name)
    expected = f"no branch, tag or commit 'nope' in {url}"
    with pytest.raises(InvalidArgument, match=re.escape(expected)):
        await checks.check_git(url, "nope", settings)
    with pytest.raises(InvalidArgument, match=re.escape(expected)):
        await _fetch(tmp_path, blobs, settings, url, "nope")
    with pytest.raises(InvalidArgument, match=r"no branch, tag or commit '0{40}'"):
        await _fetch(tmp_path, blobs, settings, url, "0" * 40)


async def test_missing_repository(git_hosts: GitHosts, settings: SourceSettings) -> None:
    with pytest.raises(InvalidArgument, match=r"no Git repository at git://127\.0\.0\.1:\d+/nothing\.git"):
        await checks.check_git(git_hosts.daemon.url("nothing.git"), "", settings)


async def test_unreachable_host(tmp_path: Path, blobs: FsBlobStore, settings: SourceSettings) -> None:
    url = f"git://127.0.0.1:{free_port()}/repo.git"
    # Refused at once when the task is created...
    with pytest.raises(FailedPrecondition, match=r"cannot reach the Git server .*Connection refused"):
        await checks.check_git(url, "", settings)
    # ...and retried (a temporary error) when it happens in the worker.
    with pytest.raises(Unavailable, match="cannot reach the Git server"):
        await _fetch(tmp_path, blobs, settings, url)


async def test_repository_over_the_size_limit(git_hosts: GitHosts, tmp_path: Path, blobs: FsBlobStore,
                                              settings: SourceSettings) -> None:
    small = replace(settings, max_repo_bytes=1 << 20)
    with pytest.raises(ResourceExhausted, match=r"is larger than the limit of 1 MiB .*CODEX_SYS_GIT_MAX_REPO_MB"):
        await _fetch(tmp_path, blobs, small, git_hosts.daemon.url(git_hosts.big.name))
    assert list((tmp_path / "sources").iterdir()) == []
    fetched = await _fetch(tmp_path, blobs, settings, git_hosts.daemon.url(git_hosts.big.name))
    assert fetched.manifest.total_size > 3 << 20


@pytest.mark.parametrize("form", ["file", "path"])
async def test_local_sources_only_when_enabled(form: str, git_hosts: GitHosts, tmp_path: Path, blobs: FsBlobStore,
                                               settings: SourceSettings) -> None:
    url = f"file://{git_hosts.repo.path}" if form == "file" else str(git_hosts.repo.path)
    with pytest.raises(InvalidArgument, match="CODEX_SYS_GIT_ALLOW_LOCAL"):
        await checks.check_git(url, "", settings)
    with pytest.raises(InvalidArgument, match="CODEX_SYS_GIT_ALLOW_LOCAL"):
        await _fetch(tmp_path, blobs, settings, url)
    enabled = replace(settings, allow_local=True)
    await checks.check_git(url, "feature", enabled)
    fetched = await _fetch(tmp_path, blobs, enabled, url, "feature")
    assert fetched.base_commit == git_hosts.repo.commits["feature"]


async def test_credentials_in_the_url_work_and_are_never_shown(git_hosts: GitHosts, tmp_path: Path,
                                                               blobs: FsBlobStore, settings: SourceSettings,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    http = git_hosts.http
    url = http.url(git_hosts.repo.name, credentials=True)
    assert HTTP_SECRET in url
    checked, target = await checks.check_git(url, "v1", settings)
    assert checked.redacted == http.url(git_hosts.repo.name) and target.label == "tag v1"
    fetched = await _fetch(tmp_path, blobs, settings, url, "v1")
    assert fetched.base_commit == git_hosts.repo.commits["first"]
    assert HTTP_SECRET not in fetched.note and HTTP_USER not in fetched.note
    failures = []
    for bad in (http.url(git_hosts.repo.name), url.replace(HTTP_SECRET, "wrong-" + HTTP_SECRET)):
        with pytest.raises(FailedPrecondition, match="refused access") as refused:
            await checks.check_git(bad, "", settings)
        failures.append(str(refused.value))
    with pytest.raises(InvalidArgument) as unknown:
        await _fetch(tmp_path, blobs, settings, url, "nope")
    failures.append(str(unknown.value))
    for text in [*failures, caplog.text]:
        assert HTTP_SECRET not in text and f"{HTTP_USER}:" not in text, text


async def test_credentials_in_the_url_are_on_no_command_line(git_hosts: GitHosts, tmp_path: Path, blobs: FsBlobStore,
                                                            settings: SourceSettings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Every git process and remote helper is recorded with its arguments (what `ps` shows to every user).
    recorder = ArgvRecorder(tmp_path / "recorder")
    monkeypatch.setenv("PATH", recorder.path)
    url = git_hosts.http.url(git_hosts.repo.name, credentials=True)
    await checks.check_git(url, "v1", settings)
    fetched = await _fetch(tmp_path, blobs, settings, url, "feature")
    # The server demands the credentials on every request: the header carried them.
    assert fetched.base_commit == git_hosts.repo.commits["feature"]
    lines = recorder.lines()
    clean = git_hosts.http.url(git_hosts.repo.name)
    for command in ("git ls-remote", "git -C", "git-remote-http "):
        assert any(line.startswith(command) and clean in line for line in lines), (command, lines)
    assert not [line for line in lines if HTTP_SECRET in line or f"{HTTP_USER}:" in line]
