"""Running the scripted model as a process: `python -m runner.scripted_llm --scenario FILE --port N`.

It logs (structured, to stderr) the URL it listens on and prints nothing; it runs until interrupted.
`--scenario` takes a file path or the name of a bundled scenario (`noop`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

from runner import logs
from runner.scripted_llm.scenario import Scenario, ScenarioError, bundled_names
from runner.scripted_llm.server import ScriptedLLMServer

log = logging.getLogger(__name__)


def load_scenario(spec: str | Path) -> Scenario:
    """A scenario from a file path, or from the bundled scenarios by name when no such file exists."""
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return Scenario.load(path)
    return Scenario.bundled(str(spec))


async def serve(scenario_path: str | Path, host: str = "127.0.0.1", port: int = 0,
                unix_socket: str | Path | None = None) -> None:
    """Serve a scenario until cancelled."""
    server = ScriptedLLMServer(load_scenario(scenario_path))
    try:
        await server.start_tcp(host, port)
        if unix_socket is not None:
            await server.start_unix(unix_socket)
        await asyncio.Event().wait()
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.scripted_llm",
                                     description="A scripted OpenAI-compatible model server.")
    parser.add_argument("--scenario", default="noop",
                        help=f"scenario file, or a bundled scenario name ({', '.join(bundled_names())})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--unix", default=None, help="also listen on this unix socket")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        load_scenario(args.scenario)
    except ScenarioError as exc:
        log.error("bad scenario", extra={"error": str(exc)})
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.scenario, args.host, args.port, args.unix))
    return 0
