"""`codex-sys run` end to end on the example project: the diff, the artifacts, the event stream."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest

from runner.domain.models import ARTIFACT_NAMES
from runner.scripted_llm import Scenario

from .conftest import PROVIDER_KEY, copy_example

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _git_apply(patch: Path, folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "apply", *extra, str(patch)], cwd=folder, capture_output=True, text=True,
                          check=False)


async def test_run_fixes_the_example_and_every_artifact_is_downloaded(short_tmp, provider_factory, codex_factory):
    provider = await provider_factory(Scenario.bundled("demo-fix-calc"))
    codex = await codex_factory(provider)
    ws = copy_example(short_tmp)
    out = short_tmp / "out"

    res = await codex.run("run", "--json", "--out", str(out), "Fix the failing test in calc.py", cwd=ws)

    assert res.returncode == 0, res.stderr[-3000:] + codex.runner_log()[-3000:]
    result = res.result
    assert result["status"] == "COMPLETED"
    assert result["files_changed"] == 1
    # Every event once, numbered from 1 without a gap, and the result last.
    seqs = [e["seq"] for e in res.events]
    assert seqs == list(range(1, len(seqs) + 1))
    states = [e["state"] for e in res.events if e["kind"] == "state_changed"]
    assert states == ["QUEUED", "PREPARING", "SETTING_UP", "RUNNING", "UPLOADING", "COMPLETED"]
    assert res.events[-1]["kind"] == "task_result"
    tools = [e["name"] for e in res.events if e["kind"] == "tool_call_started"]
    assert tools == ["run_shell_command", "read_file_content", "edit_file_content", "run_shell_command"]

    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACT_NAMES)
    diff = (out / "diff.patch").read_text()
    assert "-    return a // b" in diff and "+    return a / b" in diff
    assert "_version.py" not in diff, "a file made by setup.sh leaked into the diff"
    assert "Fix the failing test in calc.py" in (out / "prompt.txt").read_text()
    assert "python3 -m unittest -q" in (out / "prompt.txt").read_text(), "AGENTS.md is not in the prompt"
    assert "Python 3" in (out / "setup.log").read_text()
    assert "true division" in (out / "summary.md").read_text()
    transcript = (out / "llm_response.txt").read_text()
    assert "edit_file_content" in transcript and "return a / b" in transcript
    assert PROVIDER_KEY not in transcript

    # The diff applies with git apply to a pristine copy, and the tests pass after it.
    pristine = copy_example(short_tmp / "pristine")
    applied = _git_apply(out / "diff.patch", pristine)
    assert applied.returncode == 0, applied.stderr
    tests = subprocess.run(["python3", "-m", "unittest", "-q"], cwd=pristine, capture_output=True, text=True,
                           check=False)
    assert tests.returncode == 0, tests.stderr

    # `codex-sys apply` does the same in the workspace itself.
    apply = await codex.run("apply", result["task_id"], cwd=ws)
    assert apply.returncode == 0, apply.stderr
    assert "return a / b" in (ws / "calc.py").read_text()


async def test_a_late_watcher_gets_every_event_exactly_once(short_tmp, provider_factory, codex_factory):
    provider = await provider_factory(Scenario.bundled("demo-fix-calc"))
    codex = await codex_factory(provider)
    ws = copy_example(short_tmp)
    live = await codex.run("run", "--json", "Fix the failing test in calc.py", cwd=ws)
    assert live.returncode == 0, live.stderr[-3000:]
    task_id = live.result["task_id"]

    late = await codex.run("watch", "--json", task_id)
    assert late.returncode == 0, late.stderr
    assert late.events == live.events
    assert late.result["status"] == "COMPLETED"

    resumed = await codex.run("watch", "--json", "--after-seq", "3", task_id)
    assert resumed.events == live.events[3:]


async def test_an_unchanged_workspace_uploads_nothing_the_second_time(short_tmp, provider_factory, codex_factory):
    provider = await provider_factory({"name": "noop", "steps": [], "final": "Nothing to do."})
    codex = await codex_factory(provider)
    ws = copy_example(short_tmp)

    first = await codex.run("run", "--json", "--no-wait", "Look around", cwd=ws)
    second = await codex.run("run", "--json", "--no-wait", "Look around again", cwd=ws)

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    submitted_1, submitted_2 = first.json_lines()[0], second.json_lines()[0]
    assert submitted_1["type"] == submitted_2["type"] == "submitted"
    assert submitted_1["blobs_uploaded"] == len(list(ws.iterdir())) + 1  # every file and the manifest
    assert submitted_2["blobs_uploaded"] == 0
    assert submitted_2["bytes_uploaded"] == 0
    assert submitted_1["task_id"] != submitted_2["task_id"]
    for submitted in (submitted_1, submitted_2):
        watched = await codex.run("watch", "--json", submitted["task_id"])
        assert watched.result["status"] == "COMPLETED", watched.stderr


async def test_a_failing_setup_script_fails_the_task_and_keeps_its_log(short_tmp, provider_factory, codex_factory):
    provider = await provider_factory({"name": "never-called", "steps": [], "final": "unreachable"})
    codex = await codex_factory(provider)
    ws = copy_example(short_tmp)
    (ws / "setup.sh").write_text("#!/bin/sh\necho preparing the database\nexit 3\n")
    out = short_tmp / "out"

    res = await codex.run("run", "--json", "--out", str(out), "Anything", cwd=ws)

    assert res.returncode == 1
    assert res.result["status"] == "FAILED"
    assert "setup.sh" in res.result["reason"] and "3" in res.result["reason"]
    assert "preparing the database" in (out / "setup.log").read_text()
    assert provider.server.chat_requests == [], "the agent must not reach the model after setup failed"
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACT_NAMES)


async def test_apply_works_in_a_workspace_below_the_top_of_a_git_repository(short_tmp, provider_factory,
                                                                           codex_factory):
    provider = await provider_factory(Scenario.bundled("demo-fix-calc"))
    codex = await codex_factory(provider)
    repo = short_tmp / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    ws = copy_example(repo / "projects")
    res = await codex.run("run", "--json", "Fix the failing test in calc.py", cwd=ws)
    assert res.result["status"] == "COMPLETED", res.stderr[-2000:]

    apply = await codex.run("apply", res.result["task_id"], cwd=ws)

    assert apply.returncode == 0, apply.stderr
    assert "return a / b" in (ws / "calc.py").read_text()
    assert not (repo / "calc.py").exists()


async def test_share_links_download_artifacts_without_a_token_from_minio(short_tmp, provider_factory, codex_factory,
                                                                         deployment):
    provider = await provider_factory(Scenario.bundled("demo-fix-calc"))
    codex = await codex_factory(provider)
    ws = copy_example(short_tmp)
    res = await codex.run("run", "--json", "Fix the failing test in calc.py", cwd=ws)
    task_id = res.result["task_id"]

    links = await codex.run("artifacts", task_id, "--link", "--name", "diff.patch", "--expires", "60")

    if deployment == "embedded":
        assert links.returncode == 2
        assert "cannot sign links" in links.stderr and "codex-sys artifacts" in links.stderr
        return
    assert links.returncode == 0, links.stderr
    name, url = links.stdout.strip().split("\t")
    assert name == "diff.patch" and url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=10) as resp:  # no token, no credentials: the link is enough
        body = resp.read().decode()
        disposition = resp.headers["Content-Disposition"]
    assert "+    return a / b" in body
    assert f"{task_id}-diff.patch" in disposition
    too_long = await codex.run("artifacts", task_id, "--link", "--expires", "999999999")
    assert too_long.returncode == 2 and "7 days" in too_long.stderr
