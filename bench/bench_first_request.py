"""Submit → the agent's first LLM request, on a warm embedded runner, against a cold start.

An embedded runner (SQLite, filesystem CAS, bubblewrap sandboxes, the gateway) runs in this process with
the scripted model as its provider on loopback TCP. For each task: the submit of an unchanged small
workspace (snapshot already taken: the digest check and CreateTask), then the time until the provider
receives the task's first chat completion request, which has gone agent → gateway (unix socket) →
provider. Tasks run one after another; between two, the pool gets a moment to refill.

- warm: `--pool 1` sandbox kept started (bwrap, interpreter and agent already up, blocked on its spec);
- baseline, cold: the same runner with no warm pool: each task starts its sandbox from nothing.

    .venv/bin/python -m bench.bench_first_request [--tasks 30]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from runner.client.connection import RunnerClient
from runner.client.snapshot import take_snapshot
from runner.client.upload import submit_task
from runner.composition import Runner, RunnerConfig
from runner.config import HomeLayout, LLMSettings
from runner.domain import models as m
from runner.scripted_llm import Scenario, ScriptedLLMServer


async def measure(tmp: Path, pool: int, tasks: int) -> list[float]:
    ws = tmp / f"ws{pool}"
    ws.mkdir()
    (ws / "README.md").write_text("# a small project\n")
    (ws / "main.py").write_text("print('hello')\n")
    snapshot = take_snapshot(ws)
    latencies: list[float] = []
    async with ScriptedLLMServer(default=Scenario.bundled("noop"), api_key="bench-key") as provider:
        base_url = await provider.start_tcp("127.0.0.1", 0)
        home = HomeLayout(tmp / f"h{pool}")
        config = RunnerConfig(home=home, llm=LLMSettings(base_url, "bench-key", "bench"), warm_pool=pool,
                                workers=1)
        async with Runner(config), RunnerClient(f"unix:{home.runner_socket}") as client:
            for i in range(tasks + 1):
                await asyncio.sleep(0.6)  # the pool refills between tasks
                seen = len(provider.chat_requests)
                started = time.monotonic()
                task, _ = await submit_task(client, snapshot.manifest, snapshot.sources, f"task {i}")
                async for event in client.watch(task.id):
                    if isinstance(event.payload, m.TaskResult):
                        assert event.payload.state is m.TaskState.COMPLETED, event.payload
                first = provider.chat_requests[seen].monotonic  # stamped by the provider on arrival
                if i:  # the first task also warms the runner's own caches
                    latencies.append((first - started) * 1000)
    return latencies


def _summary(name: str, values: list[float]) -> str:
    q = statistics.quantiles(values, n=20)
    return (f"{name:<28} p50 {statistics.median(values):7.1f} ms   p95 {q[18]:7.1f} ms   "
            f"min {min(values):6.1f}   max {max(values):6.1f}   (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=30)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cx-bench-", dir="/tmp"))
    try:
        warm = asyncio.run(measure(tmp, 1, args.tasks))
        cold = asyncio.run(measure(tmp, 0, args.tasks))
        print("submit -> agent's first LLM request at the provider, embedded runner")
        print(_summary("warm pool (1 sandbox)", warm))
        print(_summary("baseline: cold sandbox", cold))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
