"""`codex-sys pr` end to end: the real console script against a real runner and Git server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Api, Project

pytestmark = pytest.mark.timeout(60)

CODEX = str(Path(sys.executable).parent / "codex-sys")


async def _codex(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(CODEX, *args, env=env, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_codex_sys_pr_pushes_the_branch_and_prints_it(api: Api, project: Project, tmp_path: Path):
    diff = project.diff_for(project.head, {"src/app.py": b"def greet():\n    return 'from the cli'\n"})
    task = await api.completed_task(diff, project.head)
    env = {**os.environ, "CODEX_SYS_HOME": str(tmp_path / "cli-home"), "GITHUB_TOKEN": ""}
    runner = f"unix:{api.home.runner_socket}"

    code, out, err = await _codex("--runner", runner, "pr", task.id, "--remote", project.http_url,
                                  "--branch", "codex/from-cli", env=env)
    assert code == 0, err
    commit = project.ref("codex/from-cli")
    assert out.splitlines() == ["branch codex/from-cli", f"commit {commit}"]
    assert "no pull request opened" in err
    assert project.tree(commit) == project.expected_tree(project.head, diff)

    code, out, err = await _codex("--runner", runner, "pr", task.id, "--remote", project.http_url,
                                  "--branch", "codex/from-cli", "--json", env=env)
    assert code == 0, err
    assert json.loads(out) == {"type": "pull_request", "task_id": task.id, "branch": "codex/from-cli",
                               "commit": commit, "base_commit": project.head, "rebased": False,
                               "pull_request_url": "", "pull_request_number": 0}

    code, out, err = await _codex("--runner", runner, "pr", task.id, "--remote", project.http_url,
                                  "--branch", "bad..name", env=env)
    assert code == 2 and "not a valid branch name" in err and out == ""
