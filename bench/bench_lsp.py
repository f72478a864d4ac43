"""Benchmarks of the language server, with baselines measured in the same run.

1. A task's diff to diagnostics and code actions: a git repository of --files files (default 200), a
   patch changing --lines lines (default 5,000) in hunks spread over every file; timed: parsing the patch,
   reading each file, locating every hunk, building every diagnostic, and the code actions of one file,
   the work the server does when a task completes. Baseline: `git apply --check` of the same patch (git
   parsing and checking it in C). Bar: 50 ms.
2. The editor's snapshot of an unchanged workspace (--snapshot-files, default 10,000) with 5 open buffers,
   digest cache warm in memory, as `codexSys.runTask` takes it. Baseline: `os.walk` with an `lstat` per
   file. Bar: 100 ms.
3. The real server process (`codex-sys lsp` over stdio, pygls client): resident memory after initialize,
   and after 20 tasks run end to end on the embedded runner (scripted no-op model) and their changes
   applied.
4. Event latency, agent → editor: a task of --events tool calls; for each, from the moment the scripted
   model receives the request it answers with the tool call, to the moment the editor (the LSP client in
   this process) receives the progress report naming it. An upper bound of "agent emits → editor
   receives": it also holds the model's answer reaching the agent. Baseline in the same task: a gRPC
   WatchTask client in this process receiving the same events straight from the runner. Bar: p50 10 ms,
   p99 50 ms.

    .venv/bin/python -m bench.bench_lsp [--files 200] [--lines 5000] [--snapshot-files 10000] [--tasks 20]
                                        [--events 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.protocol import default_converter
from pygls.workspace import Workspace
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import make_test_lsp_client

from lsp_server.documents import read_file_texts
from lsp_server.placement import place
from lsp_server.settings import Settings
from lsp_server.snapshots import EditorSnapshots
from lsp_server.tasks import Folder, TrackedTask
from lsp_server.translate import code_actions, diagnostic
from runner.client.connection import RunnerClient
from runner.domain import models as m
from runner.domain.changes import parse_changes
from runner.scripted_llm import Scenario, ScriptedLLMServer

GIT = ["git", "-c", "user.email=b@example.com", "-c", "user.name=b"]


def ms(values: list[float]) -> str:
    return f"min {min(values) * 1000:7.1f} ms  median {statistics.median(values) * 1000:7.1f} ms"


def make_repo(root: Path, files: int, changed_lines: int) -> str:
    per_file = max(1, changed_lines // files)
    hunks = 5
    subprocess.run([*GIT, "init", "-q", str(root)], check=True)
    for i in range(files):
        path = root / f"pkg{i % 10}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"value_{i}_{n} = {n}  # line {n}\n" for n in range(per_file * 4 + 40)))
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-qm", "base"], check=True)
    for i in range(files):
        path = root / f"pkg{i % 10}" / f"mod{i}.py"
        lines = path.read_text().splitlines(keepends=True)
        step = len(lines) // hunks
        changed = 0
        for h in range(hunks):
            for k in range(per_file // hunks + (1 if h < per_file % hunks else 0)):
                n = h * step + 4 + k
                lines[n] = lines[n].replace(" = ", " = 10 * ")
                changed += 1
        path.write_text("".join(lines))
    patch = subprocess.run([*GIT, "-C", str(root), "diff", "--binary", "-M", "--full-index", "--no-color"],
                           check=True, capture_output=True, text=True).stdout
    subprocess.run([*GIT, "-C", str(root), "checkout", "-q", "--", "."], check=True)
    return patch


async def diff_to_actions(root: Path, patch: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    folder = Folder(root.as_uri(), root)
    task = TrackedTask("t0000000000000001", folder, "bench")
    task.set_changes(parse_changes(patch), patch)
    ws = Workspace(root.as_uri())
    paths = task.paths
    texts = await read_file_texts(ws, [(folder.uri_of(p), root / p) for p in paths])
    diagnostics = 0
    first: list[Any] = []
    for path, current in zip(paths, texts, strict=True):
        placed = place([task], path, current.text, current.problem)
        diagnostics += len([diagnostic(p) for p in placed])
        first = first or placed
    actions = code_actions(first, lsp.Range(lsp.Position(0, 0), lsp.Position(10_000, 0)), True)
    return time.perf_counter() - started, diagnostics, len(actions)


def git_apply_check(root: Path, patch_file: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["git", "-C", str(root), "apply", "--check", str(patch_file)], check=True)
    return time.perf_counter() - started


async def bench_diff(args: argparse.Namespace, tmp: Path) -> None:
    root = tmp / "diffrepo"
    patch = make_repo(root, args.files, args.lines)
    patch_file = tmp / "task.patch"
    patch_file.write_text(patch)
    changed = sum(1 for line in patch.splitlines() if line.startswith("-") and not line.startswith("---"))
    ours, base = [], []
    counts = (0, 0)
    for _ in range(args.repeat):
        seconds, n_diag, n_actions = await diff_to_actions(root, patch)
        ours.append(seconds)
        counts = (n_diag, n_actions)
        base.append(git_apply_check(root, patch_file))
    print(f"diff of {args.files} files / {changed:,} changed lines -> {counts[0]} diagnostics, "
          f"{counts[1]} code actions")
    print(f"  language server      {ms(ours)}   (bar 50 ms)")
    print(f"  git apply --check    {ms(base)}   (baseline)")


def make_tree(root: Path, files: int) -> list[str]:
    rels = []
    for i in range(files):
        rel = f"d{i % 50}/sub{i % 7}/f{i}.txt"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i % 2000))
        rels.append(rel)
    return rels


def walk_lstat(root: Path) -> float:
    started = time.perf_counter()
    for dirpath, _, names in os.walk(root):
        for name in names:
            os.lstat(os.path.join(dirpath, name))
    return time.perf_counter() - started


async def bench_snapshot(args: argparse.Namespace, tmp: Path) -> None:
    root = tmp / "snaproot"
    rels = make_tree(root, args.snapshot_files)
    await asyncio.sleep(2.5)  # out of the digest cache's racy window
    overlays = {rel: b"unsaved buffer text\n" for rel in rels[:5]}
    snaps = EditorSnapshots()
    settings = Settings()
    await snaps.take(root, overlays, settings)  # cold: hashes everything, fills the cache
    ours, base = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        snap = await snaps.take(root, overlays, settings)
        ours.append(time.perf_counter() - started)
        base.append(walk_lstat(root))
    await snaps.close()
    print(f"editor snapshot, unchanged workspace of {len(snap.manifest.entries):,} files, 5 open buffers, warm cache")
    print(f"  language server      {ms(ours)}   (bar 100 ms)")
    print(f"  os.walk + lstat      {ms(base)}   (baseline)")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Served:
    client: LanguageClient
    provider: ScriptedLLMServer
    home: Path


@asynccontextmanager
async def served(project: Path, scenario: dict[str, Any],
                 client_factory: Callable[[], LanguageClient] = make_test_lsp_client) -> AsyncIterator[Served]:
    """The real `codex-sys lsp` on `project`, initialized as VS Code, with a private embedded runner whose
    model is the scripted `scenario`; all stopped and removed on the way out."""
    provider = ScriptedLLMServer(default=Scenario.from_dict(scenario), api_key="bench-key")
    base_url = await provider.start_tcp("127.0.0.1", 0)
    home = Path(tempfile.mkdtemp(prefix="cxb-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_SYS_"))}
    env.update(CODEX_SYS_HOME=str(home), OPENAI_BASE_URL=base_url, OPENAI_API_KEY="bench-key",
               CODEX_SYS_LOG_LEVEL="WARNING")
    codex = str(Path(sys.executable).parent / "codex-sys")
    client = await ClientServerConfig(server_command=[codex, "lsp"], server_env=env,
                                      client_factory=client_factory).start()
    try:
        await client.initialize_session(lsp.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"), root_uri=project.as_uri(),
            workspace_folders=[lsp.WorkspaceFolder(uri=project.as_uri(), name="p")]))
        yield Served(client, provider, home)
    finally:
        await client.shutdown_session()
        await client.stop()
        await asyncio.to_thread(subprocess.run, [codex, "runner", "stop"], env=env, capture_output=True, check=False)
        await provider.close()
        shutil.rmtree(home, ignore_errors=True)


def accepting_client() -> LanguageClient:
    """pytest-lsp's client, answering every workspace/applyEdit with `applied: true`."""
    client = make_test_lsp_client()

    @client.feature(lsp.WORKSPACE_APPLY_EDIT)
    def _apply(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
        return lsp.ApplyWorkspaceEditResult(applied=True)

    return client


async def bench_rss(args: argparse.Namespace, tmp: Path) -> None:
    project = tmp / "rssproj"
    make_tree(project, 200)
    (project / "notes.txt").write_text("a\n")
    edit = {"file_path": "notes.txt", "old_string": "a\n", "new_string": "b\n"}
    scenario = {"name": "one-edit", "steps": [{"content": "Editing.", "tool_calls": [
        {"name": "edit_file_content", "arguments": edit}]}]}
    async with served(project, scenario, accepting_client) as s:
        client = s.client
        pid = client._server.pid  # the server process under test
        await asyncio.sleep(0.5)
        idle = rss_kib(pid)
        started = time.perf_counter()
        for i in range(args.tasks):
            got = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(
                command="codexSys.runTask", arguments=[{"instruction": f"task {i}"}]))
            while True:
                listed = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(
                    command="codexSys.listTasks", arguments=[]))
                if listed["tasks"][0]["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
                    break
                await asyncio.sleep(0.05)
            await client.workspace_execute_command_async(lsp.ExecuteCommandParams(
                command="codexSys.applyTask", arguments=[{"taskId": got["taskId"]}]))
        elapsed = time.perf_counter() - started
        after = rss_kib(pid)
    print(f"server process (codex-sys lsp) resident memory: idle {idle / 1024:.1f} MiB, after {args.tasks} tasks "
          f"run and applied {after / 1024:.1f} MiB ({elapsed / args.tasks * 1000:.0f} ms per task end to end)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench_latency(args: argparse.Namespace, tmp: Path) -> None:
    steps = [{"content": None, "tool_calls": [{"name": "run_shell_command",
                                               "arguments": {"command_string": f"true {k}"}}]}
             for k in range(args.events)]
    project = tmp / "latproj"
    make_tree(project, 20)
    editor_seen: list[tuple[float, str]] = []

    def stamping_client() -> LanguageClient:
        """A client that stamps each progress report as it arrives (and ignores the rest)."""
        c = LanguageClient(converter_factory=default_converter)

        @c.feature(lsp.PROGRESS)
        def _progress(params: lsp.ProgressParams) -> None:
            value = params.value if isinstance(params.value, dict) else {}
            editor_seen.append((time.monotonic(), str(value.get("message") or "")))

        @c.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def _create(params: lsp.WorkDoneProgressCreateParams) -> None:
            return None

        @c.feature(lsp.WORKSPACE_CONFIGURATION)
        def _configuration(params: lsp.ConfigurationParams) -> list[None]:
            return [None for _ in params.items]

        for method in (lsp.WINDOW_SHOW_MESSAGE, lsp.WINDOW_LOG_MESSAGE, lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS):
            c.feature(method)(lambda params: None)
        return c

    grpc_seen: list[float] = []
    async with served(project, {"name": "many-tools", "steps": steps}, stamping_client) as s:
        got = await s.client.workspace_execute_command_async(lsp.ExecuteCommandParams(
            command="codexSys.runTask", arguments=[{"instruction": "many tool calls"}]))
        async with RunnerClient(f"unix:{s.home}/runner.sock") as runner:
            async with asyncio.timeout(120):
                async for event in runner.watch(got["taskId"]):
                    if isinstance(event.payload, m.ToolCallStarted):
                        grpc_seen.append(time.monotonic())
        await asyncio.sleep(0.2)
        asked = [r.monotonic for r in s.provider.chat_requests][: args.events]
    to_editor = [t for t, msg in editor_seen if msg.startswith("run_shell_command true")]
    n = min(len(asked), len(to_editor), len(grpc_seen))
    lsp_ms = [(to_editor[k] - asked[k]) * 1000 for k in range(n)]
    grpc_ms = [(grpc_seen[k] - asked[k]) * 1000 for k in range(n)]
    print(f"event latency, model answers a tool call -> received, {n} events of one task")
    for name, values, note in (("editor (LSP progress)", lsp_ms, "bar p50 10 ms, p99 50 ms"),
                               ("gRPC watcher", grpc_ms, "baseline")):
        print(f"  {name:22} p50 {percentile(values, 0.5):6.1f} ms  p99 {percentile(values, 0.99):6.1f} ms  "
              f"max {max(values):6.1f} ms   ({note})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--snapshot-files", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--events", type=int, default=60)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="codex-bench-lsp-"))
    try:
        await bench_diff(args, tmp)
        await bench_snapshot(args, tmp)
        await bench_rss(args, tmp)
        await bench_latency(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
