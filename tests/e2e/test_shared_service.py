"""The runner as a shared service, checked as one flow through real processes: a `codex-sys runner serve`
process (gRPC on TCP with a token file of two tenants, the task pages over HTTP) and a `codex-sys worker`
on the session's NATS and MinIO, real bubblewrap sandboxes, a `git daemon` that serves (and takes pushes
to) a repository, headless Chromium, and the real `codex-sys` CLI. Only the model is scripted
(`demo-fix-calc`, which fixes examples/calc).

1. Tenant A submits by Git URL (a branch of the repository on the git daemon) and by zip; tenant B submits
   a task of its own, so that its list is not empty by accident.
2. A's share link (`codex-sys share --expires 10`) opens the page in a browser that has no token: state,
   diff, artifacts.
3. B cannot list, get, watch, download, cancel, link, share or push A's tasks: over gRPC each call is
   NOT_FOUND with the very message an unknown id gets; the CLI exits 2 with "no task"; the pages answer
   B's bearer token with the same 404 page as for an unknown id.
4. `codex-sys pr` pushes a branch to the same repository; fetched back over git://, its tree is the base
   commit's plus `diff.patch` (downloaded with `codex-sys artifacts --out`, applied with `git apply`).
5. Hostile zips (a zip-slip entry, an absolute path) are refused with exit 2 naming the entry; nothing
   appears outside (a sentinel folder next to the runner's and worker's homes, the test's root), no task
   is created, no unpack folder is left behind.
6. Past its time, the share link is 410 (page and artifacts) and the browser shows the expired page.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from git_servers import GitDaemon, SampleRepo, git, make_repo
from pr_tests.conftest import Project
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from servers import free_port
from source_tests.conftest import calc_files
from source_tests.zips import build, entry
from web_tests.browser import chromium

from runner.client.connection import RunnerClient
from runner.domain.errors import NotFound
from runner.pulls.models import PullRequestRequest
from runner.scripted_llm import Scenario

from .conftest import CODEX, CliResult, Codex, codex_env
from .deployments import Distributed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TENANT_A, TENANT_B = "tenant-a", "tenant-b"
TOKEN_A = "shared-e2e-tenant-a-member-7c1f0e93"
TOKEN_B = "shared-e2e-tenant-b-member-2b8d4a61"
INSTRUCTION = "Fix the failing test in calc.py"
BRANCH = "feature"
PR_BRANCH = "codex/test"
UNKNOWN_ID = "t0123456789abcdef"  # well formed, never made
SHARE_S = 10  # long enough for a loaded machine to read the page; steps 3-5 take most of it anyway


@dataclass
class Service:
    root: Path  # the test's tmp root
    cluster: Distributed
    a: Codex  # the CLI with tenant A's token
    b: Codex  # the CLI with tenant B's token
    pages: str  # the HTTP side's base URL
    repo: SampleRepo
    daemon: GitDaemon
    sentinel: Path  # a folder next to the runner's and worker's homes

    @property
    def grpc(self) -> str:
        return self.cluster.runners[0].address

    @property
    def git_url(self) -> str:
        return self.daemon.url(self.repo.name)

    def logs(self) -> str:
        return self.cluster.logs()[-6000:]


@pytest.fixture
async def service(short_tmp: Path, provider_factory: Any, nats_server: Any, minio_server: Any,
                  ) -> AsyncIterator[Service]:
    repos = short_tmp / "repos"
    repo = make_repo(repos, "calc.git", files=calc_files(), executables=("setup.sh",))
    (short_tmp / "daemon").mkdir()
    daemon = GitDaemon(short_tmp / "daemon", repos, receive_pack=True).start()
    provider = await provider_factory(Scenario.bundled("demo-fix-calc"))
    base = {k: v for k, v in codex_env(short_tmp, provider).items() if k != "CODEX_SYS_HOME"}
    (short_tmp / "cluster").mkdir()
    cluster = Distributed(CODEX, short_tmp / "cluster", nats_server, minio_server, base, token=TOKEN_A,
                          tenant=TENANT_A)
    sentinel = short_tmp / "cluster" / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("nothing else belongs here\n")
    http_port = free_port()
    try:
        await cluster.start_runner(tokens=f"# two tenants, one member token each\n{TOKEN_A} {TENANT_A} member\n"
                                          f"{TOKEN_B} {TENANT_B} member\n",
                                   extra_args=["--http-listen", f"127.0.0.1:{http_port}"])
        await cluster.start_worker(slots=3)
        a = Codex(short_tmp / "cli-a", cluster.client_env(short_tmp / "cli-a", token=TOKEN_A), cluster=cluster)
        b = Codex(short_tmp / "cli-b", cluster.client_env(short_tmp / "cli-b", token=TOKEN_B), cluster=cluster)
        yield Service(short_tmp, cluster, a, b, f"http://127.0.0.1:{http_port}", repo, daemon, sentinel)
    finally:
        await cluster.close()
        daemon.stop()


# ---- helpers ----------------------------------------------------------------------------------------


def _completed(res: CliResult, service: Service, what: str) -> str:
    """The task id of a `run --json` that must have COMPLETED with the calc fix."""
    assert res.returncode == 0, f"{what}: exit {res.returncode}\n{res.stderr[-3000:]}\n{service.logs()}"
    assert res.result["status"] == "COMPLETED" and res.result["files_changed"] == 1, (what, res.result)
    return str(res.result["task_id"])


def _project_zip(path: Path) -> Path:
    """examples/calc as GitHub's "Download ZIP" gives it: everything under one top folder."""
    path.write_bytes(build([entry("calc-main/"), *(entry(f"calc-main/{name}", data, mode=0o755 if name.endswith(".sh")
                                                         else 0o644) for name, data in calc_files().items())]))
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in folder.rglob("*")}


async def _not_found(call: Callable[[], Awaitable[object]]) -> str:
    """The message of the NotFound that `call` must raise."""
    with pytest.raises(NotFound) as caught:
        await asyncio.wait_for(call(), 15)
    return str(caught.value)


async def _drain(events: AsyncIterator[object]) -> None:
    async for _ in events:
        pass


@contextlib.asynccontextmanager
async def _browser() -> AsyncIterator[WebDriver]:
    """Headless Chromium with a fresh profile (no cookie, no token), driven from worker threads."""
    manager = chromium()
    driver = await asyncio.wait_for(asyncio.to_thread(manager.__enter__), 30)
    try:
        driver.set_page_load_timeout(15)
        yield driver
    finally:
        await asyncio.wait_for(asyncio.to_thread(manager.__exit__, None, None, None), 30)


def _texts(driver: WebDriver, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def _read_shared_page(driver: WebDriver, url: str) -> dict[str, Any]:
    """What the shared page shows, read before the link expires (assertions come after)."""
    driver.get(url)
    seen: dict[str, Any] = {
        "title": driver.title, "badge": driver.find_element(By.ID, "state-badge").text,
        "facts": driver.find_element(By.CSS_SELECTOR, "dl.facts").text,
        "files": _texts(driver, "ul.files li"), "removed": _texts(driver, "table.sbs td.del"),
        "added": _texts(driver, "table.sbs td.add"), "artifacts": _texts(driver, "table.artifacts code"),
        "share_forms": len(driver.find_elements(By.CSS_SELECTOR, "form.share")),
        "shared_note": _texts(driver, "p.shared")}
    views = {e.get_attribute("href") or "" for e in driver.find_elements(By.CSS_SELECTOR, "table.artifacts a")
             if e.text == "view"}
    diff_view = [href for href in views if href.endswith("/artifacts/diff.patch")]
    seen["diff_view"] = diff_view
    if diff_view:
        driver.get(diff_view[0])
        seen["diff_text"] = driver.find_element(By.TAG_NAME, "body").text
    seen["read_at"] = time.time()
    return seen


def _read_expired_page(driver: WebDriver, url: str) -> tuple[str, str]:
    driver.get(url)
    return driver.find_element(By.TAG_NAME, "h1").text, driver.find_element(By.TAG_NAME, "body").text


def _expiry_of(share: CliResult) -> float:
    """The link's end, as `codex-sys share` tells it on stderr (whole seconds, UTC)."""
    found = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", share.stderr)
    assert found, share.stderr
    return float(calendar.timegm(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")))


# ---- the flow ---------------------------------------------------------------------------------------


async def test_two_tenants_share_one_runner(service: Service) -> None:
    s = service
    a, b = s.a, s.b
    outside_before = {p: p.exists() for p in (Path("/outside.txt"), s.root.parent / "outside.txt")}
    sentinel_before = _tree(s.sentinel)
    project_zip = _project_zip(s.root / "project.zip")

    async with _browser() as driver:
        # ---- 1. A submits by Git URL and by zip; B submits a task of its own --------------------------
        git_run, zip_run, b_run = await asyncio.gather(
            a.run("run", "--json", "--git", f"{s.git_url}#{BRANCH}", INSTRUCTION),
            a.run("run", "--json", "--zip", str(project_zip), INSTRUCTION),
            b.run("run", "--json", "--zip", str(project_zip), INSTRUCTION))
        git_id = _completed(git_run, s, "A's run --git")
        zip_id = _completed(zip_run, s, "A's run --zip")
        b_id = _completed(b_run, s, "B's run --zip")
        a_ids = {git_id, zip_id}
        clone_notes = [e["text"] for e in git_run.events if e["kind"] == "log_line" and e["text"].startswith("cloned ")]
        assert clone_notes and clone_notes[0].startswith(
            f"cloned {s.git_url} at {BRANCH} ({s.repo.commits[BRANCH][:12]})"), clone_notes
        # Blobs are per tenant: B's upload of the same archive is not satisfied by A's.
        for res in (zip_run, b_run):
            submitted = res.json_lines()[0]
            assert submitted["type"] == "submitted"
            assert submitted["bytes_uploaded"] == project_zip.stat().st_size, submitted

        # ---- 2. A's share link, opened by a browser without a token ----------------------------------
        share = await a.run("share", git_id, "--expires", str(SHARE_S))
        assert share.returncode == 0, share.stderr
        link = share.stdout.strip()
        expires_at = _expiry_of(share)
        assert link.startswith(f"{s.pages}/s/1."), link
        seen = await asyncio.wait_for(asyncio.to_thread(_read_shared_page, driver, link), 30)
        assert seen["read_at"] < expires_at, "the page was read after the link expired; the machine is too slow"
        assert git_id in seen["title"] and seen["badge"] == "COMPLETED", seen
        assert f"git {s.git_url} @ {BRANCH} (base {s.repo.commits[BRANCH][:12]})" in seen["facts"], seen["facts"]
        assert any("calc.py" in f for f in seen["files"]), seen["files"]
        assert any("return a // b" in t for t in seen["removed"]), seen["removed"]
        assert any("return a / b" in t for t in seen["added"]), seen["added"]
        assert {"diff.patch", "summary.md", "agent.log", "llm_response.txt", "prompt.txt"} <= set(seen["artifacts"])
        assert seen["share_forms"] == 0 and seen["shared_note"], seen  # read-only
        assert seen["diff_view"] and "+    return a / b" in seen["diff_text"], seen

        # ---- 3. B sees nothing of A's tasks -----------------------------------------------------------
        async with RunnerClient(s.grpc, token=TOKEN_B) as client_b:
            listed = [t.id for t in await asyncio.wait_for(client_b.list_tasks(limit=100), 15)]
            assert listed == [b_id], listed

            def calls(task_id: str) -> dict[str, Callable[[], Awaitable[object]]]:
                return {
                    "GetTask": lambda: client_b.get_task(task_id),
                    "WatchTask": lambda: _drain(client_b.watch(task_id)),
                    "GetArtifact": lambda: client_b.artifact_bytes(task_id, "diff.patch"),
                    "GetArtifactLink": lambda: client_b.artifact_link(task_id, "diff.patch", 60),
                    "GetTaskPageLink": lambda: client_b.page_link(task_id, 60),
                    "CancelTask": lambda: client_b.cancel(task_id),
                    "CreatePullRequest": lambda: client_b.create_pull_request(PullRequestRequest(
                        task_id=task_id, remote_url=s.git_url, branch="codex/stolen")),
                }

            unknown = {name: await _not_found(call) for name, call in calls(UNKNOWN_ID).items()}
            for task_id in sorted(a_ids):
                for name, call in calls(task_id).items():
                    message = await _not_found(call)
                    assert message.replace(task_id, UNKNOWN_ID) == unknown[name], (name, message, unknown[name])
        async with RunnerClient(s.grpc, token=TOKEN_A) as client_a:
            git_task = await asyncio.wait_for(client_a.get_task(git_id), 15)
            assert git_task.state.value == "COMPLETED"  # still there, untouched by B's cancel
            assert git_task.source.base_commit == s.repo.commits[BRANCH]
        status = await a.run("status", git_id, "--json")
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["source"] == {"kind": "git", "git_url": s.git_url, "git_ref": BRANCH,
                                   "base_commit": s.repo.commits[BRANCH]}, shown
        assert shown["page_url"].endswith(f"/tasks/{git_id}"), shown
        assert git("for-each-ref", "refs/heads/codex/stolen", cwd=s.repo.path) == ""  # B pushed nothing

        refusals = await asyncio.gather(*(b.run(cmd, task_id) for task_id in sorted(a_ids)
                                          for cmd in ("status", "watch", "artifacts")))
        for res in refusals:
            assert res.returncode == 2 and "no task" in res.stderr, (res.returncode, res.stderr)
            assert INSTRUCTION not in res.stdout + res.stderr

        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as http:

            async def get(path: str, token: str) -> tuple[int, bytes]:
                async with http.get(f"{s.pages}{path}", headers={"Authorization": f"Bearer {token}"}) as resp:
                    return resp.status, await resp.read()

            for suffix in ("", "/artifacts/diff.patch"):
                unknown_status, unknown_body = await get(f"/tasks/{UNKNOWN_ID}{suffix}", TOKEN_B)
                assert unknown_status == 404
                for task_id in sorted(a_ids):
                    status, body = await get(f"/tasks/{task_id}{suffix}", TOKEN_B)
                    assert (status, body) == (404, unknown_body), (task_id, suffix, status, body[:500])
                    assert task_id.encode() not in body and b"calc" not in body
                    # The same request with A's token works: the 404 is about the tenant, not the route.
                    status, body = await get(f"/tasks/{task_id}{suffix}", TOKEN_A)
                    assert status == 200 and b"return a / b" in body, (task_id, suffix, status)
            status, body = await get("/", TOKEN_B)
            assert status == 200 and b_id.encode() in body
            assert not any(task_id.encode() in body for task_id in a_ids)

        # ---- 4. A pushes the Git task's diff as a branch of the same repository ------------------------
        pr = await a.run("pr", git_id, "--remote", s.git_url, "--branch", PR_BRANCH)
        assert pr.returncode == 0, pr.stderr + s.logs()
        assert pr.stdout.splitlines()[0] == f"branch {PR_BRANCH}", pr.stdout
        pushed = pr.stdout.splitlines()[1].removeprefix("commit ")
        out = s.root / "artifacts-a"
        got = await a.run("artifacts", git_id, "--out", str(out))
        assert got.returncode == 0, got.stderr
        diff = (out / "diff.patch").read_bytes()
        assert b"+    return a / b" in diff
        fetched = s.root / "fetched"
        git("init", "-q", str(fetched))
        git("fetch", "-q", s.git_url, f"refs/heads/{PR_BRANCH}", cwd=fetched)
        assert git("rev-parse", "FETCH_HEAD", cwd=fetched) == pushed
        assert git("rev-parse", "FETCH_HEAD^", cwd=fetched) == s.repo.commits[BRANCH]
        project = Project(bare=s.repo.path, name=s.repo.name, http_url="", git_url=s.git_url,
                          first=s.repo.commits["first"], head=s.repo.commits["head"])
        assert git("rev-parse", "FETCH_HEAD^{tree}", cwd=fetched) == project.expected_tree(s.repo.commits[BRANCH], diff)

        # ---- 5. Hostile zips are refused before anything is queued ---------------------------------
        listed_before = [line["task_id"] for line in (await a.run("list", "--json", "--limit", "100")).json_lines()]
        assert set(listed_before) == a_ids, listed_before
        absolute_name = str(s.sentinel / "outside.txt")
        calc = [entry(name, data) for name, data in calc_files().items()]
        slip = s.root / "slip.zip"
        slip.write_bytes(build([*calc, entry("../../outside.txt", b"zip-slip\n"),
                                entry(absolute_name, b"absolute\n")]))
        absolute = s.root / "absolute.zip"
        absolute.write_bytes(build([*calc, entry(absolute_name, b"absolute\n")]))
        slip_run, absolute_run = await asyncio.gather(a.run("run", "--json", "--zip", str(slip), INSTRUCTION),
                                                      a.run("run", "--json", "--zip", str(absolute), INSTRUCTION))
        assert slip_run.returncode == 2, slip_run.stderr
        assert "zip archive refused: entry '../../outside.txt' has a '..' segment" in slip_run.stderr, slip_run.stderr
        assert absolute_run.returncode == 2, absolute_run.stderr
        assert f"zip archive refused: entry '{absolute_name}' has an absolute path" in absolute_run.stderr, \
            absolute_run.stderr
        assert not any(line.get("type") == "submitted" for line in slip_run.json_lines() + absolute_run.json_lines())
        listed_after = [line["task_id"] for line in (await a.run("list", "--json", "--limit", "100")).json_lines()]
        assert listed_after == listed_before
        assert _tree(s.sentinel) == sentinel_before
        assert not list(s.root.rglob("outside.txt")), list(s.root.rglob("outside.txt"))
        assert {p: p.exists() for p in outside_before} == outside_before
        for worker in s.cluster.workers:
            sources = worker.home / "sources"
            assert not sources.exists() or not any(sources.iterdir()), list(sources.iterdir())

        # ---- 6. The share link expires ------------------------------------------------------------------
        await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.3)
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as http:
            for suffix in ("", "/artifacts/diff.patch"):
                async with http.get(link + suffix) as resp:
                    body = await resp.text()
                    assert resp.status == 410, (suffix, resp.status, body[:500])
                    assert "expired at" in body and "return a / b" not in body
        heading, text = await asyncio.wait_for(asyncio.to_thread(_read_expired_page, driver, link), 30)
        assert heading == "This share link has expired", heading
        assert "expired at" in text and git_id not in text and "return a" not in text, text
