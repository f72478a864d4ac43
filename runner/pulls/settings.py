"""The operator's settings for pull requests: who commits, which hosts are GitHub, how long git may take.

    CODEX_SYS_GIT_AUTHOR      "Name <email>" of the commits (default "codex-sys <codex-sys@localhost>")
    CODEX_SYS_GITHUB_HOSTS    comma-separated hosts whose remotes get pull requests through GitHub's REST
                              API; `host=API_URL` names the API, a bare host means https://HOST/api/v3
                              (GitHub Enterprise Server), except github.com: https://api.github.com.
                              Default: github.com
    CODEX_SYS_PR_GIT_TIMEOUT  seconds one git command (fetch, push) may take (default 300)
    CODEX_SYS_GITHUB_TIMEOUT  seconds one GitHub API request may take (default 30)

`runner serve` has flags for the first two (`--git-author`, `--github-host`, repeatable); a flag wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from runner.config import env_number
from runner.domain.errors import InvalidArgument

DEFAULT_AUTHOR = "codex-sys <codex-sys@localhost>"
GITHUB_COM = "github.com"
GITHUB_COM_API = "https://api.github.com"
_AUTHOR = re.compile(r"^\s*([^<>\n]+?)\s*<([^<>\s]+@[^<>\s]+)>\s*$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def _default_hosts() -> dict[str, str]:
    return {GITHUB_COM: GITHUB_COM_API}


@dataclass(frozen=True, slots=True)
class PullSettings:
    author_name: str = "codex-sys"
    author_email: str = "codex-sys@localhost"
    # host (lowercase, with ":port" when not the default) -> REST API base URL without a trailing '/'
    github_hosts: Mapping[str, str] = field(default_factory=_default_hosts)
    git_timeout_s: float = 300.0
    api_timeout_s: float = 30.0
    # Pull request calls at once; more wait (each holds a temporary repository and git processes).
    concurrency: int = 4

    @classmethod
    def from_env(cls, author: str | None = None, github_hosts: Sequence[str] = ()) -> PullSettings:
        name, email = parse_author(author or os.environ.get("CODEX_SYS_GIT_AUTHOR") or DEFAULT_AUTHOR,
                                   "--git-author / CODEX_SYS_GIT_AUTHOR")
        hosts_raw = list(github_hosts) or [h for h in os.environ.get("CODEX_SYS_GITHUB_HOSTS", "").split(",")
                                           if h.strip()]
        hosts = parse_github_hosts(hosts_raw, "--github-host / CODEX_SYS_GITHUB_HOSTS") if hosts_raw \
            else _default_hosts()
        return cls(author_name=name, author_email=email, github_hosts=hosts,
                   git_timeout_s=env_number("CODEX_SYS_PR_GIT_TIMEOUT", 300.0),
                   api_timeout_s=env_number("CODEX_SYS_GITHUB_TIMEOUT", 30.0))

    def api_url(self, host: str) -> str | None:
        """The REST API base for a remote on `host` (lowercase host[:port]), or None if not GitHub."""
        return self.github_hosts.get(host.lower())


def parse_author(raw: str, what: str) -> tuple[str, str]:
    match = _AUTHOR.match(raw)
    if not match:
        raise InvalidArgument(f"{what}: {raw!r} is not like 'Name <email@host>'")
    return match.group(1), match.group(2)


def parse_github_hosts(items: Sequence[str], what: str) -> dict[str, str]:
    hosts: dict[str, str] = {}
    for item in items:
        host, sep, api = item.strip().partition("=")
        host = host.strip().lower()
        if not _HOST.match(host):
            raise InvalidArgument(f"{what}: {host!r} is not a host name (host or host:port)")
        if sep:
            parts = urlsplit(api.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise InvalidArgument(f"{what}: {api!r} is not an API URL like https://HOST/api/v3")
            hosts[host] = api.strip().rstrip("/")
        elif host == GITHUB_COM:
            hosts[host] = GITHUB_COM_API
        else:
            hosts[host] = f"https://{host}/api/v3"
    return hosts
