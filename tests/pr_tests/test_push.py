"""`CreatePullRequest` over real gRPC to real Git servers: the pushed branch's tree is the base plus the
task's diff, for every kind of change; a moved base is replayed onto or refused with the conflicting
files named; a rejecting hook, a foreign branch and unusable tasks give errors a person can act on."""

from __future__ import annotations

import logging

import pytest
from git_servers import GitHttpServer, git

from runner.domain import models as m
from runner.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from runner.pulls.models import PullRequestRequest

from .conftest import EVERY_KIND, Api, Project, Servers

pytestmark = pytest.mark.timeout(60)


async def _pr(api: Api, task: m.TaskRecord, remote: str, branch: str, **kwargs: str) -> object:
    async with api.client() as client:
        return await client.create_pull_request(PullRequestRequest(task.id, remote, branch, **kwargs))


async def test_the_pushed_branch_is_the_base_plus_the_diff_for_every_kind_of_change(api: Api, project: Project):
    diff = project.diff_for(project.head, {**EVERY_KIND, "run.sh": b"#!/bin/sh\necho changed\n",
                                           "tool.sh": b"#!/bin/sh\n"}, executable=("tool.sh",))
    assert b"rename from docs/moving.txt" in diff and b"GIT binary patch" in diff and b"new file mode 100755" in diff
    task = await api.completed_task(diff, project.head)

    async with api.client() as client:
        result = await client.create_pull_request(PullRequestRequest(task.id, project.http_url, "codex/greeting"))

    assert result.branch == "codex/greeting" and not result.rebased and not result.pull_request_url
    assert project.ref("codex/greeting") == result.commit
    assert project.tree(result.commit) == project.expected_tree(project.head, diff)
    assert git("rev-parse", f"{result.commit}^", cwd=project.bare) == project.head == result.base_commit
    message = git("log", "-1", "--format=%an <%ae>%n%s%n%(trailers:key=Codex-Task,valueonly)", result.commit,
                  cwd=project.bare)
    assert message.splitlines() == ["codex-sys <codex-sys@localhost>", "Make the greeting friendlier", task.id]
    mode = git("ls-tree", result.commit, "tool.sh", cwd=project.bare)
    assert mode.startswith("100755 ")


async def test_a_second_call_for_the_same_task_pushes_nothing_new(api: Api, project: Project):
    diff = project.diff_for(project.head, {"README.md": b"# project, improved\n"})
    task = await api.completed_task(diff, project.head)
    first = await _pr(api, task, project.git_url, "codex/again")  # git daemon this time
    second = await _pr(api, task, project.git_url, "codex/again")
    assert first == second
    assert project.ref("codex/again") == second.commit  # type: ignore[attr-defined]


async def test_a_base_commit_behind_the_branch_is_replayed_onto_its_head(api: Api, project: Project):
    # The task ran on `first`; main has one more commit (CHANGES.md) and then another to src/util.py.
    diff = project.diff_for(project.first, {"src/app.py": EVERY_KIND["src/app.py"]})
    task = await api.completed_task(diff, project.first)
    moved = project.commit_on("main", {"src/util.py": b"value_0 = 'moved'\n" + FILES_UTIL_TAIL})

    result = await _pr(api, task, project.http_url, "codex/rebased")

    assert result.rebased and result.base_commit == moved  # type: ignore[attr-defined]
    commit = project.ref("codex/rebased")
    assert git("rev-parse", f"{commit}^", cwd=project.bare) == moved
    assert project.tree(commit) == project.expected_tree(moved, diff)


FILES_UTIL_TAIL = b"".join(f"value_{i} = {i}\n".encode() for i in range(1, 30))


async def test_a_conflict_with_the_moved_base_names_the_file(api: Api, project: Project):
    diff = project.diff_for(project.head, {"src/app.py": b"def greet():\n    return 'hi from the task'\n"})
    task = await api.completed_task(diff, project.head)
    project.commit_on("main", {"src/app.py": b"def greet():\n    return 'hi from a colleague'\n"})

    with pytest.raises(FailedPrecondition) as caught:
        await _pr(api, task, project.http_url, "codex/conflict")
    assert "src/app.py" in str(caught.value) and "conflict" in str(caught.value)
    assert project.ref("codex/conflict") == ""


async def test_a_rerun_after_the_base_moved_updates_its_own_branch_but_never_a_foreign_one(api: Api, project: Project):
    diff = project.diff_for(project.head, {"README.md": b"# better\n"})
    task = await api.completed_task(diff, project.head)
    first = await _pr(api, task, project.http_url, "codex/own")
    moved = project.commit_on("main", {"CHANGES.md": b"- second\n- third\n"})
    again = await _pr(api, task, project.http_url, "codex/own")
    assert again.rebased and again.commit != first.commit  # type: ignore[attr-defined]
    assert git("rev-parse", "refs/heads/codex/own^", cwd=project.bare) == moved

    foreign = project.commit_on("someone/else", {"notes.txt": b"mine\n"})
    with pytest.raises(FailedPrecondition) as caught:
        await _pr(api, task, project.http_url, "someone/else")
    assert "already has a branch 'someone/else'" in str(caught.value)
    assert project.ref("someone/else") == foreign


async def test_a_push_refused_by_a_hook_carries_the_hooks_message(api: Api, project: Project):
    hook = project.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'policy: branches under codex/ need a ticket number' >&2\nexit 1\n")
    hook.chmod(0o755)
    diff = project.diff_for(project.head, {"README.md": b"# hooked\n"})
    task = await api.completed_task(diff, project.head)
    with pytest.raises(FailedPrecondition) as caught:
        await _pr(api, task, project.http_url, "codex/hooked")
    assert "branches under codex/ need a ticket number" in str(caught.value)
    assert "pre-receive hook declined" in str(caught.value)


async def test_a_base_commit_the_server_will_not_send_by_id_is_found_by_deepening(api: Api, servers: Servers,
                                                                                  caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, "runner.pulls")
    project = servers.project("deepen.git", any_sha=False)
    with GitHttpServer(servers.base, receive_pack=True, protocol_v2=False) as v0:
        # `first` is no ref's tip: a protocol v0 server refuses it by id.
        for _ in range(3):
            project.commit_on("main", {"CHANGES.md": f"- {_}\n".encode()})
        diff = project.diff_for(project.first, {"README.md": b"# from the first commit\n"})
        task = await api.completed_task(diff, project.first)
        result = await _pr(api, task, v0.url("deepen.git"), "codex/deep")
    assert result.rebased  # type: ignore[attr-defined]
    assert project.tree(project.ref("codex/deep")) == project.expected_tree(project.ref("main"), diff)
    assert [r.depth for r in caplog.records if r.getMessage() == "base commit found by deepening"] == [50]  # type: ignore[attr-defined]


async def test_a_base_commit_missing_from_the_remote_is_named(api: Api, project: Project, servers: Servers):
    other = servers.project("unrelated.git")
    diff = other.diff_for(other.head, {"README.md": b"# elsewhere\n"})
    task = await api.completed_task(diff, "0" * 40)
    with pytest.raises(FailedPrecondition) as caught:
        await _pr(api, task, project.http_url, "codex/missing")
    assert "base commit 000000000000 is not on" in str(caught.value) and "push that commit" in str(caught.value)


@pytest.mark.parametrize("case", ["zip", "no-base", "running", "empty-diff", "bad-branch", "base-is-branch",
                                  "local-url", "no-remote", "other-tenant", "no-such-base"])
async def test_requests_that_cannot_work_are_refused_before_anything_is_pushed(api: Api, project: Project,
                                                                               case: str):
    diff = project.diff_for(project.head, {"README.md": b"# x\n"})
    kwargs: dict[str, object] = {}
    branch, remote, base = "codex/x", project.http_url, ""
    expected: type[Exception] = FailedPrecondition
    if case == "zip":
        kwargs["kind"] = m.SourceKind.ZIP
    elif case == "running":
        kwargs["state"] = m.TaskState.RUNNING
    elif case == "other-tenant":
        kwargs["tenant"], expected = "someone-else", NotFound
    task = await api.completed_task(b"" if case == "empty-diff" else diff,
                                    "" if case == "no-base" else project.head, **kwargs)  # type: ignore[arg-type]
    if case == "bad-branch":
        branch, expected = "-x..y", InvalidArgument
    elif case == "local-url":
        remote, expected = f"file://{project.bare}", InvalidArgument
    elif case == "no-remote":
        remote, expected = "", InvalidArgument
    elif case == "base-is-branch":
        branch = "main"
    elif case == "no-such-base":
        base = "release"
    with pytest.raises(expected) as caught:
        await _pr(api, task, remote, branch, base_branch=base)
    text = str(caught.value)
    assert {"zip": "zip archive", "no-base": "no base commit", "running": "RUNNING", "empty-diff": "changed nothing",
            "bad-branch": "not a valid branch name", "base-is-branch": "is the base branch itself",
            "local-url": "refused unless the operator enables it", "no-remote": "give the remote",
            "other-tenant": "no task", "no-such-base": "no branch 'release'"}[case] in text
    assert [r for r in git("for-each-ref", "--format=%(refname)", cwd=project.bare).split() if "codex" in r] == []
