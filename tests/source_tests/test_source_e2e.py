"""`codex-sys run --git` and `run --zip` end to end, through the real CLI, runner, worker and sandbox
(both deployments): the task completes with a diff; a hostile zip is refused with the reason (exit 2);
credentials in a Git URL never reach the output, the events, the record or the runner's log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.scripted_llm import Scenario

from .conftest import HTTP_SECRET, HTTP_USER, GitHosts, calc_files
from .zips import build, entry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
INSTRUCTION = "Fix the failing test in calc.py"


def _assert_fixed(res, codex) -> list[dict]:
    assert res.returncode == 0, res.stderr[-3000:] + codex.runner_log()[-3000:]
    assert res.result["status"] == "COMPLETED" and res.result["files_changed"] == 1
    return res.events


async def test_git_and_zip_sources(short_tmp: Path, provider_factory, codex_factory, git_hosts: GitHosts) -> None:
    provider = await provider_factory(Scenario.bundled("demo-fix-calc"))
    codex = await codex_factory(provider)
    calc = git_hosts.calc

    url = git_hosts.daemon.url(calc.name)
    res = await codex.run("run", "--json", "--out", str(short_tmp / "git-out"), "--git", f"{url}#feature",
                          INSTRUCTION)
    events = _assert_fixed(res, codex)
    notes = [e["text"] for e in events if e["kind"] == "log_line" and e["text"].startswith("cloned ")]
    assert len(notes) == 1, [e.get("text") for e in events]
    files = len(calc_files()) + 1  # and feature.txt
    assert notes[0].startswith(f"cloned {url} at feature ({calc.commits['feature'][:12]}): {files} files, "), notes
    diff = (short_tmp / "git-out" / "diff.patch").read_text()
    assert "+    return a / b" in diff and "feature.txt" not in diff
    status = json.loads((await codex.run("status", "--json", res.result["task_id"])).stdout)
    assert status["state"] == "COMPLETED"

    archive = short_tmp / "project.zip"
    archive.write_bytes(build([entry("calc-main/"), *(entry(f"calc-main/{n}", d, mode=0o755 if n.endswith(".sh")
                                                            else 0o644) for n, d in calc_files().items())]))
    res = await codex.run("run", "--json", "--zip", str(archive), INSTRUCTION)
    events = _assert_fixed(res, codex)
    assert any(e["kind"] == "log_line" and "top folder calc-main/ stripped" in e["text"] for e in events)

    hostile = short_tmp / "hostile.zip"
    hostile.write_bytes(build([entry("calc.py", b"x = 1\n"), entry("../../../escaped.sh", b"echo pwned\n")]))
    res = await codex.run("run", "--zip", str(hostile), INSTRUCTION)
    assert res.returncode == 2, res.stderr
    assert "zip archive refused: entry '../../../escaped.sh' has a '..' segment" in res.stderr
    assert not (short_tmp.parent / "escaped.sh").exists() and not Path("/escaped.sh").exists()


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
async def test_credentials_in_a_git_url_are_never_shown(short_tmp: Path, provider_factory, codex_factory,
                                                        git_hosts: GitHosts) -> None:
    provider = await provider_factory(Scenario.bundled("demo-fix-calc"))
    codex = await codex_factory(provider)
    url = git_hosts.http.url(git_hosts.calc.name, credentials=True)
    res = await codex.run("run", "--json", "--git", url, INSTRUCTION)
    _assert_fixed(res, codex)
    task_id = res.result["task_id"]
    shown = [res.stdout, res.stderr, codex.runner_log(),
             (await codex.run("status", "--json", task_id)).stdout,
             (await codex.run("watch", "--json", task_id)).stdout,
             (await codex.run("list", "--json")).stdout]
    assert git_hosts.http.url(git_hosts.calc.name) in res.stdout  # the redacted form is what is shown
    for text in shown:
        assert HTTP_SECRET not in text and f"{HTTP_USER}:" not in text
    # A refused URL's error does not show them either.
    bad = await codex.run("run", "--git", url.replace(HTTP_SECRET, "x" + HTTP_SECRET) + "#main", INSTRUCTION)
    assert bad.returncode == 2 and "refused access" in bad.stderr and HTTP_SECRET not in bad.stderr
