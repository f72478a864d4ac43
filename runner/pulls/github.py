"""Opening a pull request through GitHub's REST API ("Create a pull request", API version 2022-11-28).

    POST {api}/repos/{owner}/{repo}/pulls
    Accept: application/vnd.github+json
    Authorization: Bearer <token>
    X-GitHub-Api-Version: 2022-11-28
    {"title": …, "head": "<branch>", "base": "<base branch>", "body": …, "draft": false}

201 answers the pull request (`html_url`, `number`). 401 (bad credentials) and 403 (the token lacks the
right, or a rate limit) become `PermissionDenied` (a rate limit `Unavailable`), 404 (no such repository,
or one the token may not see) `NotFound`. 422 is a validation failure; the usual one on a re-run is "a
pull request already exists" for the branch: then the open pull request for `owner:branch` is looked up
(`GET …/pulls?head=owner:branch&state=open`) and returned, so calling twice is harmless. Network errors
and 5xx are `Unavailable`. GitHub's own `message` is quoted in every error; the token never is.

Which hosts are GitHub, and their API URLs, are settings (`runner.pulls.settings`); the remote's owner and
repository come from its URL: https://HOST/OWNER/REPO(.git), git@HOST:OWNER/REPO(.git),
ssh://git@HOST/OWNER/REPO(.git).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from runner.domain.errors import CodexError, FailedPrecondition, NotFound, PermissionDenied, Unavailable
from runner.sources.git_command import Redactor

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
USER_AGENT = "codex-sys"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_SCP = re.compile(r"^(?:[^@/:]+@)?([^@/:]+):(?!/)(.+)$")


@dataclass(frozen=True, slots=True)
class GitHubRepo:
    host: str  # lowercase host, ":port" kept when given
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, slots=True)
class PullRequest:
    url: str
    number: int
    existing: bool = False  # it was already open for this branch


def parse_repo(url: str) -> GitHubRepo | None:
    """Host, owner and repository of a remote URL shaped like GitHub's, or None."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
            return None
        host = parts.hostname.lower() + (f":{parts.port}" if parts.port and parts.scheme in ("http", "https")
                                         else "")
        path = parts.path
    else:
        match = _SCP.match(url)
        if not match:
            return None
        host, path = match.group(1).lower(), match.group(2)
    segments = [s for s in path.strip("/").split("/") if s]
    if len(segments) != 2:
        return None
    owner, name = segments[0], segments[1].removesuffix(".git")
    if not (_NAME.match(owner) and _NAME.match(name)) or name in (".", ".."):
        return None
    return GitHubRepo(host, owner, name)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: Any  # the decoded JSON
    rate_limited: bool = False


class GitHubApi:
    """One REST API (github.com's or a GitHub Enterprise Server's) used with one token."""

    def __init__(self, api_url: str, token: str, timeout_s: float) -> None:
        self._api = api_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._redact = Redactor([token])

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/vnd.github+json", "Authorization": f"Bearer {self._token}",
                "X-GitHub-Api-Version": API_VERSION, "User-Agent": USER_AGENT}

    async def create_pull(self, repo: GitHubRepo, *, title: str, head: str, base: str, body: str,
                          draft: bool) -> PullRequest:
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        url = f"{self._api}/repos/{repo.owner}/{repo.name}/pulls"
        answer = await self._call("POST", url, repo, json_body=payload)
        if answer.status == 201:
            pull = _pull_of(answer.body, repo)
            log.info("pull request opened", extra={"repo": repo.full_name, "number": pull.number})
            return pull
        if answer.status == 422:
            existing = await self._find_open(repo, head)
            if existing is not None:
                log.info("pull request already open", extra={"repo": repo.full_name, "number": existing.number})
                return existing
            raise FailedPrecondition(f"GitHub refused the pull request {head} -> {base} in {repo.full_name}: "
                                     f"{self._describe(answer.body)}")
        raise self._error(answer, repo)

    async def _find_open(self, repo: GitHubRepo, head: str) -> PullRequest | None:
        url = f"{self._api}/repos/{repo.owner}/{repo.name}/pulls"
        answer = await self._call("GET", url, repo, params={"head": f"{repo.owner}:{head}", "state": "open"})
        if answer.status != 200:
            raise self._error(answer, repo)
        found = answer.body
        if isinstance(found, list) and found and isinstance(found[0], dict):
            pull = _pull_of(found[0], repo)
            return PullRequest(pull.url, pull.number, existing=True)
        return None

    async def _call(self, method: str, url: str, repo: GitHubRepo, *, json_body: Any = None,
                    params: dict[str, str] | None = None) -> _Answer:
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as session, session.request(
                    method, url, headers=self._headers(), json=json_body, params=params) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text) if text else {}
                except json.JSONDecodeError:
                    body = {"message": text[:300]}
                limited = resp.status in (403, 429) and (resp.headers.get("x-ratelimit-remaining") == "0"
                                                         or "retry-after" in resp.headers)
                return _Answer(resp.status, body, limited)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"GitHub's API at {self._api} cannot be reached for {repo.full_name}: "
                              f"{self._redact(str(exc) or type(exc).__name__)}; try again") from exc

    def _describe(self, answer: Any) -> str:
        if not isinstance(answer, dict):
            return "(no message)"
        parts = [str(answer.get("message") or "(no message)")]
        for item in answer.get("errors") or []:
            if isinstance(item, dict):
                parts.append(str(item.get("message") or item.get("code") or item))
            else:
                parts.append(str(item))
        return self._redact("; ".join(parts)[:1000])

    def _error(self, answer: _Answer, repo: GitHubRepo) -> CodexError:
        status, said = answer.status, self._describe(answer.body)
        if status == 401:
            return PermissionDenied(f"GitHub refused the token ({status}: {said}); check that it is valid and "
                                    "not expired")
        if answer.rate_limited:
            return Unavailable(f"GitHub's rate limit for this token is used up ({said}); try again later", 60.0)
        if status == 403:
            return PermissionDenied(f"the token lacks rights to open pull requests in {repo.full_name} ({status}: "
                                    f"{said}); it needs write access to pull requests (fine-grained: "
                                    "'Pull requests: read and write'; classic: the 'repo' scope)")
        if status == 404:
            return NotFound(f"GitHub has no repository {repo.full_name}, or this token may not see it ({said})")
        if status >= 500:
            return Unavailable(f"GitHub answered {status} for {repo.full_name} ({said}); try again")
        return FailedPrecondition(f"GitHub answered {status} for {repo.full_name}: {said}")


def _pull_of(answer: Any, repo: GitHubRepo) -> PullRequest:
    if not isinstance(answer, dict) or not isinstance(answer.get("html_url"), str) \
            or not isinstance(answer.get("number"), int):
        raise Unavailable(f"GitHub answered for {repo.full_name} without a pull request's html_url and number")
    return PullRequest(answer["html_url"], answer["number"])
