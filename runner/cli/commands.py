"""The CLI's subcommands.

Output contract: human-readable progress goes to stderr (a live display on a TTY), results to stdout
(the diff, the task id); with `--json`, stdout carries one JSON object per line and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from runner.cli.events_json import event_json, result_json, source_line, task_json
from runner.cli.main import EXIT_INPUT, EXIT_OK, EXIT_TASK
from runner.cli.render import ProgressView
from runner.cli.snapshotting import save_cache, snapshot_workspace
from runner.client.connection import RunnerClient
from runner.client.embedded import ensure_embedded_runner, stop_embedded_runner
from runner.client.follow import follow_events
from runner.client.gitrepo import find_repository, head_commit
from runner.client.upload import submit_task, upload_file
from runner.config import HomeLayout, codex_home
from runner.domain import models as m
from runner.domain.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@asynccontextmanager
async def _connect(args: argparse.Namespace) -> AsyncIterator[RunnerClient]:
    address = args.runner
    if not address:
        address = await ensure_embedded_runner(HomeLayout(codex_home()))
    client = RunnerClient(address, token=args.token, ca_file=Path(args.ca_file) if args.ca_file else None,
                          plaintext=args.plaintext)
    try:
        yield client
    finally:
        await client.close()


def _reviver(args: argparse.Namespace) -> Callable[[], Awaitable[None]] | None:
    """For the embedded runner: start it again if it went away (its tasks are taken back on start)."""
    if args.runner:
        return None

    async def revive() -> None:
        await ensure_embedded_runner(HomeLayout(codex_home()))

    return revive


async def dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "runner":
        from runner.cli import serve

        if args.runner_command == "stop":
            stopped = await stop_embedded_runner(HomeLayout(codex_home()))
            sys.stderr.write("embedded runner stopped\n" if stopped else "no embedded runner was running\n")
            return EXIT_OK
        return await serve.serve(args)
    if command == "worker":
        from runner.cli import serve

        return await serve.worker(args)
    if command == "scripted-llm":
        from runner.cli import serve

        return await serve.scripted_llm(args)
    handler = {
        "run": cmd_run, "status": cmd_status, "watch": cmd_watch, "diff": cmd_diff, "cancel": cmd_cancel,
        "artifacts": cmd_artifacts, "apply": cmd_apply, "list": cmd_list, "pr": cmd_pr,
        "share": cmd_share,
    }[command]
    return await handler(args)


# ---- run / watch ------------------------------------------------------------------------------------


async def follow(client: RunnerClient, task_id: str, as_json: bool, after_seq: int = 0,
                 revive: Callable[[], Awaitable[None]] | None = None) -> m.TaskRecord:
    """Stream a task's events until its result (see `runner.client.follow`), then the final record."""
    console = Console(stderr=True)
    with contextlib.ExitStack() as stack:
        view = None if as_json else stack.enter_context(ProgressView(console, task_id))
        async for event in follow_events(client, task_id, after_seq, revive):
            if as_json:
                _emit(event_json(event))
            elif view is not None:
                view.show(event)
    return await client.get_task(task_id)


async def download_artifacts(client: RunnerClient, task: m.TaskRecord, out: Path,
                             names: list[str] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ref in task.artifacts:
        if names and ref.name not in names:
            continue
        if ref.name not in m.ARTIFACT_NAMES:  # never write a name the runner should not have sent
            raise InvalidArgument(f"the runner sent an unknown artifact name {ref.name!r}")
        data = await client.artifact_bytes(task.id, ref.name)
        if m.Digest.of(data) != ref.digest:
            raise Unavailable(f"artifact {ref.name} of task {task.id} arrived corrupted; try again")
        path = out / ref.name
        await asyncio.to_thread(path.write_bytes, data)
        written.append(path)
    return written


# The runner refuses an archive over its own limit (CODEX_SYS_ZIP_MAX_MB); this only bounds the read.
MAX_ZIP_UPLOAD_BYTES = 4 << 30


async def _submit_source(client: RunnerClient, args: argparse.Namespace, status: Console,
                         **create: Any) -> m.TaskRecord:
    """`run --git URL[#REF]` or `run --zip FILE`: the runner fetches the source itself."""
    if args.git:
        url, _, ref = args.git.rpartition("#") if "#" in args.git else (args.git, "", "")
        task = await client.create_task(args.instruction, git_url=url, git_ref=ref, **create)
        shown = task.source.git_url + (f"#{ref}" if ref else "")
        what: dict[str, Any] = {"git_url": task.source.git_url, "git_ref": ref}
    else:
        archive = Path(args.zip).resolve()
        if not archive.is_file():
            raise InvalidArgument(f"zip archive {args.zip!r} is not a file")
        digest, sent = await upload_file(client, archive, MAX_ZIP_UPLOAD_BYTES)
        task = await client.create_task(args.instruction, zip_digest=digest, **create)
        shown = f"{archive.name} ({digest.size:,} bytes, {sent:,} uploaded)"
        what = {"zip_digest": str(digest), "bytes_uploaded": sent}
    if args.json:
        _emit({"type": "submitted", "task_id": task.id, **what})
    else:
        status.print(f"[bold]task {task.id}[/bold]  from {shown}; the runner fetches it", highlight=False,
                     markup=False)
    return task


async def cmd_run(args: argparse.Namespace) -> int:
    status = Console(stderr=True)
    limits = None
    if args.timeout or args.max_steps:
        limits = m.TaskLimits(wall_time_s=args.timeout, max_steps=args.max_steps, max_llm_requests=0,
                              max_llm_tokens=0, command_timeout_s=0)
    if args.git or args.zip:
        if args.exclude:
            raise InvalidArgument("--exclude applies to a --workspace snapshot, not to --git or --zip")
        async with _connect(args) as client:
            task = await _submit_source(client, args, status, model=args.model, request_id=uuid.uuid4().hex,
                                        limits=limits)
            return await _finish_run(client, args, status, task)
    workspace = Path(args.workspace or ".").resolve()
    if not workspace.is_dir():
        raise InvalidArgument(f"workspace {args.workspace!r} is not a folder")
    snapshot, cache = await snapshot_workspace(workspace, HomeLayout(codex_home()), args.exclude)
    repo = find_repository(str(workspace))
    base_commit = await asyncio.to_thread(head_commit, repo) if repo is not None else ""
    async with _connect(args) as client:
        task, stats = await submit_task(client, snapshot.manifest, snapshot.sources, args.instruction,
                                        model=args.model, request_id=uuid.uuid4().hex, limits=limits,
                                        base_commit=base_commit)
        await save_cache(cache)
        if args.json:
            _emit({"type": "submitted", "task_id": task.id, "files": len(snapshot.manifest.entries),
                   "blobs_uploaded": stats.blobs_uploaded, "bytes_uploaded": stats.bytes_uploaded})
        else:
            status.print(f"[bold]task {task.id}[/bold]  {len(snapshot.manifest.entries)} files, "
                         f"uploaded {stats.blobs_uploaded} blobs ({stats.bytes_uploaded:,} bytes) "
                         f"in {stats.seconds:.2f} s", highlight=False)
            for skipped in snapshot.skipped[:5]:
                status.print(f"[dim]  left out {skipped}[/dim]", highlight=False)
        return await _finish_run(client, args, status, task)


async def _finish_run(client: RunnerClient, args: argparse.Namespace, status: Console, task: m.TaskRecord) -> int:
    """Wait for the task (unless --no-wait), download its artifacts, show the diff and the outcome."""
    if args.no_wait:
        if not args.json:
            sys.stdout.write(task.id + "\n")
        return EXIT_OK
    final = await follow(client, task.id, args.json, revive=_reviver(args))
    if args.out:
        await download_artifacts(client, final, Path(args.out))
    if args.json:
        _emit(result_json(final, args.out))
    else:
        if final.artifact("diff.patch") is not None:
            # Already downloaded with --out: not fetched a second time.
            diff = ((Path(args.out) / "diff.patch").read_bytes() if args.out
                    else await client.artifact_bytes(final.id, "diff.patch"))
            if diff:
                sys.stdout.write(diff.decode("utf-8", "replace"))
        status.print(f"task {final.id}: {final.state.value}" + (f" ({final.reason})" if final.reason else "")
                     + (f"; apply it with: codex-sys apply {final.id}" if final.files_changed else ""),
                     highlight=False, markup=False)
    return EXIT_OK if final.state is m.TaskState.COMPLETED else EXIT_TASK


async def cmd_watch(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        final = await follow(client, args.task_id, args.json, args.after_seq, revive=_reviver(args))
        if args.json:
            _emit(result_json(final))
    return EXIT_OK if final.state is m.TaskState.COMPLETED else EXIT_TASK


# ---- one-shot commands ----------------------------------------------------------------------------


async def cmd_status(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        task, page_url = await client.task_page(args.task_id)
    if args.json:
        _emit({**task_json(task), "page_url": page_url})
    else:
        lines = [f"task {task.id}: {task.state.value}" + (f" ({task.reason})" if task.reason else ""),
                 f"  instruction: {task.instruction}", f"  model: {task.model}",
                 f"  source: {source_line(task.source)}",
                 f"  files changed: {task.files_changed}",
                 f"  tokens: {task.usage.total_tokens:,} in {task.usage.requests} requests",
                 f"  artifacts: {', '.join(a.name for a in task.artifacts) or '(none yet)'}"]
        if page_url:
            lines.append(f"  page: {page_url}")
        sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


async def cmd_share(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        url, expires_at = await client.page_link(args.task_id, args.expires)
    sys.stdout.write(url + "\n")
    sys.stderr.write(f"anyone with this link can read task {args.task_id} until "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires_at))}\n")
    return EXIT_OK


async def cmd_diff(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        task = await client.get_task(args.task_id)
        if task.artifact("diff.patch") is None:
            sys.stderr.write(f"task {task.id} is {task.state.value}; it has no diff yet\n")
            return EXIT_TASK
        sys.stdout.write((await client.artifact_bytes(task.id, "diff.patch")).decode("utf-8", "replace"))
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        task = await client.cancel(args.task_id)
    if args.json:
        _emit(task_json(task))
    else:
        sys.stdout.write(f"task {task.id}: {'cancelled' if task.state.final else 'cancelling'}\n")
    return EXIT_OK


async def cmd_artifacts(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        task = await client.get_task(args.task_id)
        if not task.artifacts:
            sys.stderr.write(f"task {task.id} is {task.state.value}; its artifacts exist once it ends\n")
            return EXIT_TASK
        unknown = [n for n in args.name if task.artifact(n) is None]
        if unknown:
            raise InvalidArgument(f"task {task.id} has no artifact {unknown[0]!r}; it has "
                                  f"{', '.join(a.name for a in task.artifacts)}")
        if args.out:
            for path in await download_artifacts(client, task, Path(args.out), args.name or None):
                sys.stdout.write(f"{path}\n")
        elif args.link:
            for ref in task.artifacts:
                if not args.name or ref.name in args.name:
                    url, _ = await client.artifact_link(task.id, ref.name, args.expires)
                    sys.stdout.write(f"{ref.name}\t{url}\n")
        else:
            for ref in task.artifacts:
                if not args.name or ref.name in args.name:
                    sys.stdout.write(f"{ref.name}\t{ref.digest.size}\tsha256:{ref.digest.hash}\n")
    return EXIT_OK


async def cmd_apply(args: argparse.Namespace) -> int:
    workspace = Path(args.workspace).resolve()
    async with _connect(args) as client:
        task = await client.get_task(args.task_id)
        if task.state is not m.TaskState.COMPLETED:
            sys.stderr.write(f"task {task.id} is {task.state.value}; only a COMPLETED task's diff is applied\n")
            return EXIT_TASK
        diff = await client.artifact_bytes(task.id, "diff.patch")
    if not diff.strip():
        sys.stderr.write(f"task {task.id} changed nothing\n")
        return EXIT_OK
    cmd = ["git", "apply", "--whitespace=nowarn", *(["--check"] if args.check else []), "-"]
    # The diff's paths are relative to the workspace. Inside a git repository, `git apply` reads them
    # relative to the repository's top and silently skips what falls outside the current folder, so a
    # workspace below the top must not see the repository above it.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(workspace.parent)}
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=workspace, stdin=subprocess.PIPE, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await proc.communicate(diff)
    if proc.returncode != 0:
        sys.stderr.write(f"the diff of task {task.id} does not apply to {workspace}:\n{err.decode(errors='replace')}")
        return EXIT_INPUT
    sys.stderr.write(f"{'checked' if args.check else 'applied'} the diff of task {task.id} "
                     f"({task.files_changed} file(s)) in {workspace}\n")
    return EXIT_OK


async def cmd_pr(args: argparse.Namespace) -> int:
    from runner.pulls.models import PullRequestRequest

    token = os.environ.get(args.github_token_env, "").strip()
    async with _connect(args) as client:
        result = await client.create_pull_request(PullRequestRequest(
            task_id=args.task_id, remote_url=args.remote, branch=args.branch, base_branch=args.base,
            title=args.title, github_token=token, draft=args.draft))
    if args.json:
        _emit({"type": "pull_request", "task_id": args.task_id, "branch": result.branch, "commit": result.commit,
               "base_commit": result.base_commit, "rebased": result.rebased,
               "pull_request_url": result.pull_request_url, "pull_request_number": result.pull_request_number})
        return EXIT_OK
    sys.stdout.write(f"branch {result.branch}\ncommit {result.commit}\n")
    if result.pull_request_url:
        sys.stdout.write(f"pull request {result.pull_request_url}\n")
    sys.stderr.write(f"pushed {result.commit[:12]} to {result.branch}"
                     + (f", replayed onto the moved base {result.base_commit[:12]}" if result.rebased else "")
                     + ("" if result.pull_request_url else "; no pull request opened (needs a GitHub remote and "
                        f"a token in {args.github_token_env})") + "\n")
    return EXIT_OK


async def cmd_list(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        tasks = await client.list_tasks(limit=args.limit)
    if args.json:
        for t in tasks:
            _emit(task_json(t))
        return EXIT_OK
    for t in tasks:
        instruction = t.instruction.splitlines()[0] if t.instruction else ""
        sys.stdout.write(f"{t.id}  {t.state.value:<10} {t.files_changed:>3} files  {instruction[:70]}\n")
    return EXIT_OK
