"""Names from outside: branch names, GitHub remotes, and the operator's pull request settings."""

from __future__ import annotations

import pytest

from runner.domain.errors import InvalidArgument
from runner.pulls.branches import check_branch
from runner.pulls.github import GitHubRepo, parse_repo
from runner.pulls.settings import PullSettings, parse_github_hosts

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("name", ["main", "codex/fix-1", "feature/a.b_c", "x@y", "v1.2"])
def test_valid_branch_names_pass(name: str):
    assert check_branch(name) == name


@pytest.mark.parametrize(("name", "why"), [
    ("", "empty"), ("-f", "starts with '-'"), ("a..b", "'..'"), ("a b", "' '"), ("a~1", "'~'"), ("a:b", "':'"),
    ("a/", "'/' at either end"), ("a//b", "two in a row"), (".hidden/x", "starts with '.'"),
    ("x/.y", "starts with '.'"), ("x.lock", "ends with '.lock'"), ("x.", "ends with '.'"), ("a@{1}", "'@{'"),
    ("@", "reserved"), ("HEAD", "reserved"), ("refs/heads/x", "without refs/heads/"), ("a\\b", "'\\\\'"),
    ("x" * 201, "longer than"), ("a\x7fb", "'\\x7f'"),
])
def test_invalid_branch_names_say_which_rule(name: str, why: str):
    with pytest.raises(InvalidArgument) as caught:
        check_branch(name)
    assert why in str(caught.value)


@pytest.mark.parametrize(("url", "repo"), [
    ("https://github.com/acme/widgets", GitHubRepo("github.com", "acme", "widgets")),
    ("https://github.com/acme/widgets.git", GitHubRepo("github.com", "acme", "widgets")),
    ("https://user:secret@GitHub.com/acme/widgets.git/", GitHubRepo("github.com", "acme", "widgets")),
    ("git@github.com:acme/widgets.git", GitHubRepo("github.com", "acme", "widgets")),
    ("ssh://git@github.com/acme/widgets", GitHubRepo("github.com", "acme", "widgets")),
    ("http://127.0.0.1:8080/acme/w.git", GitHubRepo("127.0.0.1:8080", "acme", "w")),
    ("https://github.com/acme", None),
    ("https://github.com/acme/widgets/tree/main", None),
    ("https://github.com/acme/../x", None),
    ("file:///srv/acme/widgets.git", None),
])
def test_github_remotes_name_their_owner_and_repository(url: str, repo: GitHubRepo | None):
    assert parse_repo(url) == repo


def test_github_hosts_map_to_their_api():
    hosts = parse_github_hosts(["github.com", "GHE.example.com", "local:8080=http://127.0.0.1:9/api/"], "x")
    assert hosts == {"github.com": "https://api.github.com", "ghe.example.com": "https://ghe.example.com/api/v3",
                     "local:8080": "http://127.0.0.1:9/api"}
    assert PullSettings().api_url("github.com") == "https://api.github.com"
    assert PullSettings().api_url("gitlab.com") is None


@pytest.mark.parametrize(("env", "value", "words"), [
    ("CODEX_SYS_GITHUB_HOSTS", "bad host!", "is not a host name"),
    ("CODEX_SYS_GITHUB_HOSTS", "ghe.example.com=ftp://x", "is not an API URL"),
    ("CODEX_SYS_GIT_AUTHOR", "just a name", "is not like 'Name <email@host>'"),
    ("CODEX_SYS_PR_GIT_TIMEOUT", "soon", "is not a number"),
])
def test_bad_settings_are_named(monkeypatch: pytest.MonkeyPatch, env: str, value: str, words: str):
    monkeypatch.setenv(env, value)
    with pytest.raises(InvalidArgument) as caught:
        PullSettings.from_env()
    assert words in str(caught.value) and (env in str(caught.value) or "CODEX_SYS" in str(caught.value))


def test_settings_from_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CODEX_SYS_GIT_AUTHOR", "Env Bot <env@example.com>")
    monkeypatch.setenv("CODEX_SYS_GITHUB_HOSTS", "ghe.example.com")
    settings = PullSettings.from_env(author="Flag Bot <flag@example.com>", github_hosts=["github.com"])
    assert (settings.author_name, settings.author_email) == ("Flag Bot", "flag@example.com")
    assert dict(settings.github_hosts) == {"github.com": "https://api.github.com"}
    assert PullSettings.from_env(author=None).api_url("ghe.example.com") == "https://ghe.example.com/api/v3"
