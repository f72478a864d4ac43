"""A local stand-in for GitHub's REST API, as much as pull requests need, that checks each request the
way GitHub documents it ("Create a pull request" and "List pull requests", API version 2022-11-28) and
answers in GitHub's shapes.

GitHub itself cannot be reached from the test machines. Every request must carry
`Accept: application/vnd.github+json`, `Authorization: Bearer <token>`, `X-GitHub-Api-Version:
2022-11-28` and a User-Agent (GitHub refuses requests without one); a POST must be a JSON object with
exactly the documented fields this client sends, of the documented types. A request that breaks a rule
is answered 400 with what was wrong and recorded in `violations`, which the tests assert is empty.

Repositories: `repos` maps "owner/name" to the token allowed to write; a token that is not `token` is
refused with 401 (Bad credentials); a known token without rights gets 403, an unknown repository 404.
A second pull request for the same head is 422 "A pull request already exists", as on GitHub.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_VERSION = "2022-11-28"
FIELDS = {"title": str, "head": str, "base": str, "body": str, "draft": bool}
DOCS = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"


@dataclass
class FakeGitHub:
    token: str
    # "owner/name" -> whether the token may open pull requests there
    repos: dict[str, bool] = field(default_factory=dict)
    # "owner/name" -> branches that exist (a base that is not here is a 422 like GitHub's)
    branches: dict[str, set[str]] = field(default_factory=dict)
    pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> FakeGitHub:
        app = web.Application()
        app.router.add_post("/repos/{owner}/{repo}/pulls", self._create)
        app.router.add_get("/repos/{owner}/{repo}/pulls", self._list)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _check_headers(self, request: web.Request) -> web.Response | None:
        problems = []
        if request.headers.get("Accept") != "application/vnd.github+json":
            problems.append(f"Accept is {request.headers.get('Accept')!r}")
        if request.headers.get("X-GitHub-Api-Version") != API_VERSION:
            problems.append(f"X-GitHub-Api-Version is {request.headers.get('X-GitHub-Api-Version')!r}")
        if not request.headers.get("User-Agent"):
            problems.append("no User-Agent")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            problems.append("Authorization is not 'Bearer <token>'")
        if problems:
            self.violations.extend(problems)
            return web.json_response({"message": "; ".join(problems)}, status=400)
        if auth.removeprefix("Bearer ") != self.token:
            return web.json_response({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                                      "status": "401"}, status=401)
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if repo not in self.repos:
            return web.json_response({"message": "Not Found", "documentation_url": DOCS, "status": "404"},
                                     status=404)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._check_headers(request)
        raw = await request.read()
        record: dict[str, Any] = {"method": "POST", "path": request.path, "headers": dict(request.headers)}
        self.requests.append(record)
        if refused is not None:
            return refused
        if request.content_type != "application/json":
            self.violations.append(f"Content-Type is {request.content_type!r}")
            return web.json_response({"message": "Problems parsing JSON"}, status=400)
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self.violations.append("the body is not JSON")
            return web.json_response({"message": "Problems parsing JSON"}, status=400)
        record["json"] = body
        problems = [f"{key} is missing or not {kind.__name__}" for key, kind in FIELDS.items()
                    if key in ("title", "head", "base") and not isinstance(body.get(key), kind)]
        problems += [f"{key} is not {FIELDS[key].__name__}" for key in body
                     if key in FIELDS and not isinstance(body[key], FIELDS[key])]
        problems += [f"unknown field {key!r}" for key in body if key not in FIELDS]
        if problems:
            self.violations.extend(problems)
            return web.json_response({"message": "Invalid request.\n\n" + "\n".join(problems),
                                      "documentation_url": DOCS, "status": "422"}, status=422)
        owner, name = request.match_info["owner"], request.match_info["repo"]
        repo = f"{owner}/{name}"
        if not self.repos[repo]:
            return web.json_response({"message": "Resource not accessible by personal access token",
                                      "documentation_url": DOCS, "status": "403"}, status=403)
        if body["base"] not in self.branches.get(repo, set()):
            return web.json_response({"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "field": "base", "code": "invalid"}],
                "documentation_url": DOCS, "status": "422"}, status=422)
        open_pulls = self.pulls.setdefault(repo, [])
        if any(p["head"]["ref"] == body["head"] for p in open_pulls):
            return web.json_response({"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "code": "custom",
                 "message": f"A pull request already exists for {owner}:{body['head']}."}],
                "documentation_url": DOCS, "status": "422"}, status=422)
        number = sum(len(p) for p in self.pulls.values()) + 1
        pull = {"url": f"{self.url}/repos/{repo}/pulls/{number}", "id": 1000 + number, "number": number,
                "html_url": f"https://github.example/{repo}/pull/{number}", "state": "open",
                "title": body["title"], "body": body.get("body"), "draft": body.get("draft", False),
                "head": {"ref": body["head"], "label": f"{owner}:{body['head']}"},
                "base": {"ref": body["base"], "label": f"{owner}:{body['base']}"}}
        open_pulls.append(pull)
        return web.json_response(pull, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        refused = self._check_headers(request)
        self.requests.append({"method": "GET", "path": request.path, "query": dict(request.query)})
        if refused is not None:
            return refused
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        head = request.query.get("head", "")
        if head and ":" not in head:
            self.violations.append(f"head {head!r} is not user:ref-name")
        state = request.query.get("state", "open")
        found = [p for p in self.pulls.get(repo, []) if (not head or p["head"]["label"] == head)
                 and (state == "all" or p["state"] == state)]
        return web.json_response(found)
