"""The runner on NATS JetStream + MinIO: tasks per minute with a no-op agent, and event latency.

Real processes on a real nats-server and MinIO (started here on free ports): one
`codex-sys runner serve --no-worker` (gRPC on TCP, bearer token) and `codex-sys worker --workers 2
--warm-pool 2` processes, each with a home of its own; each worker runs the bundled scripted model in
process (no provider configured). The client is the benchmark, over gRPC to the runner.

Throughput. A tiny workspace is uploaded once; a few warm-up tasks run; then --tasks tasks are created
as fast as the client can (16 CreateTask calls in flight) and the benchmark waits until every one is
final, checking that all COMPLETED. Rate: tasks / (the last task's final record update - the first
submit), both wall-clock times of this machine. The waiting is one GetTask at a time on the oldest
unfinished task, so the observer adds next to no load. Measured with 1 worker process, then 2; baseline
in the same run: the embedded runner (`codex-sys runner serve` with its own worker: SQLite, local CAS,
the same bubblewrap sandboxes) with the same number of slots and warm sandboxes. Where the time goes:
CPU seconds per task of each process (runner, workers with their sandboxes, nats-server, MinIO, this
client) and the median time between a task's state changes.

Event latency. One task of --events tool calls (`run_shell_command` of `true`, the scripted model
answering at once) on 1 worker; a gRPC watcher (WatchTask) on the runner in this process; for every
event: the time this process receives it - `event.time` (stamped when the worker appended it). Same
machine, same clock. Events appended before the watch was opened (a replay) are left out. Baseline in
the same run: the embedded runner, same scenario.

    .venv/bin/python -m bench.bench_scale [--tasks 120] [--events 200] [--skip-latency] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bench._infra import (
    CpuAccounting,
    MinioServer,
    NatsServer,
    base_env,
    distributed,
    embedded_runner,
    infrastructure,
    load_note,
    scratch,
    system_cpu,
)
from runner.client.connection import RunnerClient
from runner.client.snapshot import Snapshot, take_snapshot
from runner.client.upload import submit_task
from runner.domain import models as m

SLOTS = 2  # per worker process
IN_FLIGHT = 16  # CreateTask calls the client keeps going at once


@dataclass
class Target:
    """A deployment to benchmark: where its API is, and the processes whose CPU time counts."""

    name: str
    address: str
    token: str
    slots: int
    processes: list[str] = field(default_factory=list)  # names in the CpuAccounting


@contextlib.asynccontextmanager
async def embedded_target(root: Path, env: dict[str, str], slots: int, cpu: CpuAccounting) -> AsyncIterator[Target]:
    async with embedded_runner(root, env, slots=slots, pool=slots, cpu=cpu, cpu_name="runner+worker") as runner:
        yield Target(f"embedded, {slots} slots", runner.address, runner.token, slots, ["runner+worker"])


@contextlib.asynccontextmanager
async def distributed_target(root: Path, nats: NatsServer, minio: MinioServer, env: dict[str, str],
                             workers: int, cpu: CpuAccounting) -> AsyncIterator[Target]:
    cluster = distributed(root, nats, minio, env)
    try:
        runner = await cluster.start_runner()
        cpu.add("runner", runner.proc.pid)
        names = ["runner"]
        for i in range(workers):
            worker = await cluster.start_worker(slots=SLOTS, CODEX_SYS_WARM_POOL=str(SLOTS))
            cpu.add(f"worker{i + 1}", worker.proc.pid)
            names.append(f"worker{i + 1}")
        cpu.add("nats-server", nats.pid)
        cpu.add("minio", minio.pid)
        yield Target(f"{workers} worker{'s' if workers > 1 else ''} x {SLOTS} slots", runner.address,
                     cluster.token, workers * SLOTS, [*names, "nats-server", "minio"])
    finally:
        await cluster.close()


def tiny_workspace(root: Path) -> Snapshot:
    ws = root / "ws"
    ws.mkdir()
    (ws / "README.md").write_text("# a small project\n")
    (ws / "main.py").write_text("print('hello')\n")
    return take_snapshot(ws)


async def wait_final(client: RunnerClient, task_ids: list[str], timeout_s: float) -> list[m.TaskRecord]:
    """The final records of `task_ids`: one GetTask at a time, on the oldest task not known to be final."""
    records: list[m.TaskRecord] = []
    deadline = time.monotonic() + timeout_s
    for task_id in task_ids:
        while True:
            record = await client.get_task(task_id)
            if record.state.final:
                records.append(record)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} is still {record.state.value} after {timeout_s:g} s")
            await asyncio.sleep(0.1)
    return records


@dataclass
class Throughput:
    target: Target
    tasks: int
    seconds: float
    submit_seconds: float
    cpu: dict[str, tuple[float, float]]  # process -> CPU seconds during the window: its own, with its children
    busy: float  # core-seconds the whole machine was busy during the window
    window: float  # seconds from the first submit until every task was seen final
    phases: dict[str, list[float]]  # "QUEUED -> PREPARING" -> seconds, per task

    @property
    def per_minute(self) -> float:
        return self.tasks / self.seconds * 60


async def phases_of(client: RunnerClient, task_id: str) -> list[tuple[str, float]]:
    changes = []
    async for event in client.watch(task_id):
        if isinstance(event.payload, m.StateChanged):
            changes.append((event.payload.state.value, event.time))
        if event.is_result:
            break
    return changes


def cpu_now(cpu: CpuAccounting, names: list[str]) -> dict[str, tuple[float, float]]:
    return {name: (cpu.own(name), cpu.total(name)) for name in names}


async def throughput(target: Target, snapshot: Snapshot, tasks: int, cpu: CpuAccounting) -> Throughput:
    async with RunnerClient(target.address, token=target.token) as client:
        # Warm-up: the upload (once), each slot's first task (imports, connections), then let pools refill.
        first, _ = await submit_task(client, snapshot.manifest, snapshot.sources, "warm-up")
        digest = first.manifest_digest
        warm = [first.id] + [(await client.create_task(f"warm-up {i}", manifest_digest=digest)).id
                             for i in range(2 * target.slots - 1)]
        await wait_final(client, warm, 120)
        await asyncio.sleep(3.0)

        names = [*target.processes, "client"]
        cpu0 = cpu_now(cpu, names)
        busy0, _ = system_cpu()
        started = time.time()
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def create(i: int) -> str:
            async with gate:
                return (await client.create_task(f"no-op {i}", manifest_digest=digest)).id

        ids = await asyncio.gather(*(create(i) for i in range(tasks)))
        submitted = time.time()
        records = await wait_final(client, list(ids), 600)
        busy1, _ = system_cpu()
        window = time.time() - started
        used = {name: (own - cpu0[name][0], total - cpu0[name][1])
                for name, (own, total) in cpu_now(cpu, names).items()}
        failed = [r for r in records if r.state is not m.TaskState.COMPLETED]
        if failed:
            raise RuntimeError(f"{len(failed)} of {tasks} tasks did not complete, e.g. {failed[0].id}: "
                               f"{failed[0].state.value} {failed[0].reason}")
        ended = max(r.updated_at for r in records)

        phases: dict[str, list[float]] = defaultdict(list)
        for task_id in ids:
            changes = await phases_of(client, task_id)
            for (a, ta), (b, tb) in itertools.pairwise(changes):
                phases[f"{a} -> {b}"].append(tb - ta)
            phases["PREPARING -> final (in a slot)"].append(
                changes[-1][1] - next(t for s, t in changes if s == "PREPARING"))
        return Throughput(target, tasks, ended - started, submitted - started, used, busy1 - busy0, window,
                          dict(phases))


def print_throughput(results: list[Throughput]) -> None:
    cores = os.cpu_count() or 1
    print(f"throughput, no-op agent, {results[0].tasks} tasks submitted at once (all COMPLETED; bar 300/min "
          "with 2 workers)")
    for r in results:
        mean_slot = statistics.fmean(r.phases["PREPARING -> final (in a slot)"])
        print(f"  {r.target.name:<24} {r.per_minute:5.0f} tasks/min   {r.seconds:5.1f} s "
              f"(submits took {r.submit_seconds:.2f} s), cores busy {r.busy / r.window / cores * 100:3.0f}%, "
              f"slot time per task {mean_slot * 1000:4.0f} ms -> at most {r.target.slots / mean_slot * 60:4.0f}/min")
    print("  CPU ms per task (sandboxes: what a process started, counted in its cgroup; kernel etc.: the rest "
          "of the machine's busy time)")
    for r in results:
        accounted = sum(t for _, t in r.cpu.values())
        parts = []
        for name, (own, with_children) in r.cpu.items():
            children = with_children - own
            parts.append(f"{name} {own / r.tasks * 1000:.0f}" +
                         (f" + sandboxes {children / r.tasks * 1000:.0f}" if children > 0.005 * r.tasks else ""))
        parts.append(f"kernel etc. {(r.busy - accounted) / r.tasks * 1000:.0f}")
        print(f"    {r.target.name:<22} {r.busy / r.tasks * 1000:4.0f} = {', '.join(parts)}")
    for r in results:
        parts = ", ".join(f"{name} {statistics.median(v) * 1000:.0f}" for name, v in r.phases.items()
                          if not name.endswith("slot)"))
        print(f"  median ms between states, {r.target.name}: {parts}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latency(target: Target, snapshot: Snapshot,
                  events: int) -> tuple[list[float], dict[str, list[float]], int]:
    """Receive time - event time of every live event of one task, in ms (and by kind), and how many
    events were left out because they were appended before the watch opened."""
    limits = m.TaskLimits(max_steps=events + 10, max_llm_requests=events + 10)
    async with RunnerClient(target.address, token=target.token) as client:
        warm, _ = await submit_task(client, snapshot.manifest, snapshot.sources, "warm-up",
                                    limits=m.TaskLimits(max_steps=2, max_llm_requests=3))
        async for event in client.watch(warm.id):  # the warm-up ends at its step budget: any end will do
            if event.is_result:
                break
        await asyncio.sleep(2.0)
        task = await client.create_task("many tool calls", manifest_digest=warm.manifest_digest, limits=limits)
        opened = time.time()
        got: list[tuple[float, m.Event]] = []
        async for event in client.watch(task.id):
            got.append((time.time(), event))
            if event.is_result:
                break
    final = got[-1][1].payload
    assert isinstance(final, m.TaskResult)
    calls = sum(isinstance(e.payload, m.ToolCallFinished) for _, e in got)
    if final.state is not m.TaskState.COMPLETED or calls < events:
        raise RuntimeError(f"the task ended {final.state.value} after {calls} tool calls: {final.reason}")
    live = [(t, e) for t, e in got if e.time >= opened]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for t, e in live:
        by_kind[type(e.payload).__name__].append((t - e.time) * 1000)
    return [(t - e.time) * 1000 for t, e in live], dict(by_kind), len(got) - len(live)


def print_latency(name: str, values: list[float], by_kind: dict[str, list[float]], replayed: int) -> None:
    print(f"  {name:<34} p50 {percentile(values, 0.5):6.2f} ms  p95 {percentile(values, 0.95):6.2f} ms  "
          f"p99 {percentile(values, 0.99):6.2f} ms  max {max(values):6.1f} ms   ({len(values)} events; "
          f"{replayed} appended before the watch opened, left out)")
    kinds = ", ".join(f"{k} {percentile(v, 0.5):.1f}/{percentile(v, 0.99):.1f}" for k, v in sorted(by_kind.items()))
    print(f"    p50/p99 by kind: {kinds}")


def scenario_file(root: Path, events: int) -> Path:
    steps = [{"content": None, "tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "true"}}]}
             for _ in range(events)]
    path = root / "many-tools.json"
    path.write_text(json.dumps({"name": "many-tools", "steps": steps, "final": "Done."}))
    return path


async def run(args: argparse.Namespace, root: Path) -> None:
    print(f"machine: {load_note()}")
    snapshot = tiny_workspace(root)
    cpu = CpuAccounting()
    if not cpu.exact:
        print("(no cgroup v1 cpuacct group could be made: sandboxes are counted under 'kernel etc.')")
    cpu.add("client", os.getpid())
    with contextlib.ExitStack() as stack:
        stack.callback(cpu.close)
        nats, minio = stack.enter_context(infrastructure(root / "servers"))
        if not args.skip_throughput:
            env = base_env(CODEX_SYS_SCRIPTED_SCENARIO="noop")
            results = []
            for n, workers in enumerate((1, 2)):
                async with embedded_target(root / f"emb{n}", env, workers * SLOTS, cpu) as target:
                    results.append(await throughput(target, snapshot, args.tasks, cpu))
                async with distributed_target(root / f"dist{n}", nats, minio, env, workers, cpu) as target:
                    results.append(await throughput(target, snapshot, args.tasks, cpu))
            print_throughput(results)
        if not args.skip_latency:
            env = base_env(CODEX_SYS_SCRIPTED_SCENARIO=str(scenario_file(root, args.events)))
            print(f"event latency, worker appends -> gRPC watcher receives, one task of {args.events} tool calls "
                  "(bar p50 10 ms, p99 50 ms)")
            async with distributed_target(root / "lat-dist", nats, minio, env, 1, cpu) as target:
                print_latency("distributed (NATS + MinIO)", *await latency(target, snapshot, args.events))
            async with embedded_target(root / "lat-emb", env, SLOTS, cpu) as target:
                print_latency("baseline: embedded (SQLite)", *await latency(target, snapshot, args.events))
    print(f"machine at the end: {load_note()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=120)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    with scratch() as root:
        asyncio.run(run(args, root))


if __name__ == "__main__":
    main()
