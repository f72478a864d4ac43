"""Git URL policy, redaction and ref syntax; the source settings' flags and variables."""

from __future__ import annotations

import argparse

import pytest

from runner.cli import source_flags
from runner.domain.errors import InvalidArgument
from runner.sources.settings import MiB, SourceSettings
from runner.sources.urls import check_git_url, check_ref, redact_url, scrub


@pytest.mark.parametrize(("url", "transport"), [
    ("https://github.com/org/repo.git", "https"), ("http://127.0.0.1:8080/r.git", "http"),
    ("git://host/r.git", "git"), ("ssh://git@host:2222/org/r.git", "ssh"), ("git+ssh://host/r", "ssh"),
    ("git@github.com:org/repo.git", "ssh"), ("host:org/repo.git", "ssh"),
])
def test_network_urls_are_accepted(url: str, transport: str) -> None:
    assert check_git_url(url, allow_local=False).transport == transport


@pytest.mark.parametrize(("url", "reason"), [
    ("file:///srv/repo.git", "CODEX_SYS_GIT_ALLOW_LOCAL"), ("/srv/repo.git", "CODEX_SYS_GIT_ALLOW_LOCAL"),
    ("../repo", "CODEX_SYS_GIT_ALLOW_LOCAL"), ("C:\\repo", "CODEX_SYS_GIT_ALLOW_LOCAL"),
    ("ext::sh", "remote helper"), ("fd::3", "remote helper"), ("ftp://host/r.git", "uses ftp://, which is not allowed"),
    ("-uhack", "starts with '-'"), ("https://", "names no host"), ("https://h/a b", "spaces"), ("", "empty"),
])
def test_refused_urls(url: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_git_url(url, allow_local=False)
    assert reason in str(refused.value)


def test_local_urls_when_enabled() -> None:
    assert check_git_url("file:///srv/r.git", allow_local=True).is_local
    assert check_git_url("/srv/r.git", allow_local=True).transport == "local"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:tok3n@host/r.git", "https://host/r.git"),
    ("https://ghp_abcdef123@github.com/o/r.git", "https://github.com/o/r.git"),
    ("http://u:p%40ss@127.0.0.1:8080/r.git?access_token=xyz", "http://127.0.0.1:8080/r.git?<redacted>"),
    ("ssh://git:pw@host/r.git", "ssh://git@host/r.git"), ("git@host:o/r.git", "git@host:o/r.git"),
    ("git:pw@host:o/r.git", "git@host:o/r.git"), ("https://host/r.git", "https://host/r.git"),
])
def test_redaction(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub_removes_secrets_from_git_output() -> None:
    url = check_git_url("https://alice:s3cr3t-value@host/r.git", allow_local=False)
    text = ("fatal: unable to access 'https://alice:s3cr3t-value@host/r.git/': 401\n"
            "remote: token s3cr3t-value rejected for alice\nsee https://bob:other@elsewhere/x")
    cleaned = scrub(text, url)
    assert "s3cr3t-value" not in cleaned and "alice" not in cleaned and "bob:other" not in cleaned
    assert "https://host/r.git" in cleaned


@pytest.mark.parametrize("ref", ["main", "feature/x", "v1.2.3", "refs/heads/main", "a" * 40])
def test_good_refs(ref: str) -> None:
    assert check_ref(ref) == ref


@pytest.mark.parametrize("ref", ["-b", "--upload-pack=x", "a..b", "a b", "a~1", "x^", "x:y", "a/", "x.lock",
                                 "@{-1}", "a\\b", "z" * 300])
def test_bad_refs(ref: str) -> None:
    with pytest.raises(InvalidArgument):
        check_ref(ref)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    source_flags.add_flags(parser)
    return parser.parse_args(argv)


def test_settings_from_variables_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert source_flags.source_settings(_args()) == SourceSettings()
    monkeypatch.setenv("CODEX_SYS_GIT_ALLOW_LOCAL", "yes")
    monkeypatch.setenv("CODEX_SYS_GIT_MAX_REPO_MB", "10")
    monkeypatch.setenv("CODEX_SYS_ZIP_MAX_RATIO", "50")
    got = source_flags.source_settings(_args("--git-max-repo-mb", "20", "--zip-max-entries", "7"))
    assert (got.allow_local, got.max_repo_bytes, got.max_ratio, got.max_entries) == (True, 20 * MiB, 50.0, 7)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("CODEX_SYS_GIT_ALLOW_LOCAL", "maybe", "CODEX_SYS_GIT_ALLOW_LOCAL='maybe' is not one of"),
    ("CODEX_SYS_ZIP_MAX_MB", "1.5", "CODEX_SYS_ZIP_MAX_MB='1.5' is not a whole number"),
    ("CODEX_SYS_GIT_CLONE_TIMEOUT", "-3", "must be a positive number"),
    ("CODEX_SYS_ZIP_MAX_RATIO", "lots", "is not a number"),
])
def test_bad_settings_are_named(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidArgument, match=message):
        source_flags.source_settings(_args())
    monkeypatch.delenv(variable)
    with pytest.raises(InvalidArgument, match="--zip-max-entries '0' must be"):
        source_flags.source_settings(_args("--zip-max-entries", "0"))
