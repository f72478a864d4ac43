"""A task that really ran (the CLI, the embedded runner, a bubblewrap sandbox, the scripted model fixing
examples/calc) made from a Git URL, then `codex-sys pr` with no --remote: the branch goes back to the
task's own repository, its tree the cloned commit plus the agent's diff."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from e2e.conftest import codex_factory, deployment, provider_factory  # noqa: F401 - fixtures
from git_servers import git, make_repo

from runner.scripted_llm import Scenario

from .conftest import Project, Servers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
async def test_a_real_tasks_diff_goes_back_to_its_repository(servers: Servers, provider_factory,  # noqa: F811
                                                             codex_factory):  # noqa: F811
    calc = {p.name: p.read_bytes() for p in (REPO / "examples" / "calc").iterdir() if p.is_file()}
    name = f"calc-{uuid.uuid4().hex[:8]}.git"
    repo = make_repo(servers.base, name, files=calc, executables=("setup.sh",))
    project = Project(bare=repo.path, name=name, http_url=servers.http.url(name), git_url=servers.daemon.url(name),
                      first=repo.commits["first"], head=repo.commits["head"])
    codex = await codex_factory(await provider_factory(Scenario.bundled("demo-fix-calc")))

    res = await codex.run("run", "--json", "--git", f"{project.git_url}#main", "Fix the failing test in calc.py")
    assert res.returncode == 0 and res.result["status"] == "COMPLETED", res.stderr[-3000:] + codex.runner_log()[-3000:]
    task_id = res.result["task_id"]
    diff = (await codex.run("diff", task_id)).stdout.encode()
    assert b"calc.py" in diff

    pr = await codex.run("pr", task_id, "--branch", "codex/fix-calc")
    assert pr.returncode == 0, pr.stderr + codex.runner_log()[-3000:]
    commit = project.ref("codex/fix-calc")
    assert pr.stdout.splitlines()[0] == "branch codex/fix-calc" and commit in pr.stdout
    assert git("rev-parse", f"{commit}^", cwd=project.bare) == project.head
    assert project.tree(commit) == project.expected_tree(project.head, diff)
