"""`python -m agent`: the agent's entry point inside the sandbox.

A warm sandbox starts this process before any task exists. Everything the task will need is imported
here, at start-up, and then the process blocks reading one line from standard input: the
`AgentTaskSpec`. The time from that line to the first model request is what the "submit → first LLM
request" bar measures, so nothing after it imports, compiles or warms anything up.

Exit status: 0 task completed, 1 task failed (see result.json), 2 unusable task spec, 143 stopped by
SIGTERM while waiting for a spec.
"""

from __future__ import annotations

import logging
import sys
import time

from agent.task import Terminated, install_signal_handlers, run_task
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


def main() -> int:
    configure_logging()
    install_signal_handlers()
    try:
        line = sys.stdin.buffer.readline()
    except Terminated as exc:
        log.info("stopped by %s while waiting for a task", exc)
        return 128 + exc.signum
    try:
        spec = parse_spec(line)
    except SpecError as exc:
        log.error("invalid task spec: %s", exc)
        return 2
    return run_task(spec)


if __name__ == "__main__":
    sys.exit(main())
