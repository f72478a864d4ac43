"""`python -m agent`: the agent's entry point inside the sandbox.

A warm sandbox starts this process before any task exists. Everything the task will need is imported
here, at start-up, the shadow git repository is created, and then the process blocks reading one line
from standard input: the `AgentTaskSpec`. The time from that line to the first model request is what
the "submit → first LLM request" bar measures, so nothing after it imports, compiles or warms anything
up that could have been done before.

Exit status: 0 task completed, 1 task failed (see result.json), 2 unusable task spec, 143 stopped by
SIGTERM while waiting for a spec.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

from agent import signals
from agent.baseline import BaselineError, init_state_dir
from agent.signals import Terminated
from agent.task import run_task
from agent.taskspec import SpecError, parse_spec

log = logging.getLogger("agent")


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def configure_logging() -> None:
    """Human-readable lines on stderr; the worker keeps them as the task's `agent.log`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UTCFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _prepare() -> Path | None:
    try:
        return init_state_dir()
    except (BaselineError, OSError) as exc:
        # Not fatal here: the task retries when it starts, and reports the failure if it persists.
        log.warning("could not prepare the shadow repository ahead of the task: %s", exc)
        return None


def main() -> int:
    # The sandbox starts with whatever umask its launcher had; files the agent and its tools create
    # (the shadow repository, the model's edits) get the usual modes whatever it was.
    os.umask(0o022)
    configure_logging()
    signals.install()
    state_dir: Path | None = None
    try:
        state_dir = _prepare()
        line = sys.stdin.buffer.readline()
    except Terminated as exc:
        log.info("stopped by %s while waiting for a task", exc)
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)
        return 128 + exc.signum
    try:
        spec = parse_spec(line)
    except SpecError as exc:
        log.error("invalid task spec: %s", exc)
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)
        return 2
    return run_task(spec, state_dir)


if __name__ == "__main__":
    sys.exit(main())
