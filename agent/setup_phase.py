"""The setup phase: run the workspace's `setup.sh` before the agent starts.

`setup.sh` installs what the project needs (dependencies, generated files). It runs as `bash setup.sh`
in the workspace root, in its own process group with the task's setup timeout, and on timeout the
whole group is killed. Its output (stdout and stderr merged, in order) goes line by line both to
`setup.log` and, as `LogEvent(stream="setup")`, to the editor while it runs.

The log file and the event stream are each capped, so a runaway script cannot fill the output folder or
flood the gateway; the cap is stated where it cuts. Whatever happens, `setup.log` ends with one line
saying how setup ended, and with no `setup.sh` it holds one line saying so.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent.events import EventSink
from agent.shell import run_process
from agent.wire import LogEvent, PhaseEvent

log = logging.getLogger(__name__)

SETUP_SCRIPT = "setup.sh"
SETUP_LOG = "setup.log"
MAX_LOG_BYTES = 16 << 20
MAX_EVENT_CHARS = 1 << 20
MAX_LINE_CHARS = 4000


@dataclass(frozen=True, slots=True)
class SetupOutcome:
    ran: bool
    ok: bool
    reason: str = ""  # why setup failed, for the task's result


class _LineSink:
    """Splits the byte stream into lines for events and writes it, capped, to the log file."""

    def __init__(self, logfile: BinaryIO, events: EventSink) -> None:
        self._file = logfile
        self._events = events
        self._partial = b""
        self._logged = 0
        self._evented = 0
        self._log_capped = False
        self._events_capped = False

    def __call__(self, data: bytes) -> None:
        self._write_log(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_CHARS * 4:
            # One endless line (a progress bar without newlines): send it in pieces.
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._emit(line)

    def finish(self, summary: str) -> None:
        if self._partial:
            self._emit(self._partial)
            self._write_log(b"\n")
            self._partial = b""
        tail = summary.encode() + b"\n"
        self._file.write(tail)  # the verdict is always written, even past the cap
        self._emit(summary.encode())

    def _write_log(self, data: bytes) -> None:
        if self._log_capped:
            return
        room = MAX_LOG_BYTES - self._logged
        if len(data) > room:
            self._file.write(data[:room])
            self._file.write(f"\n[setup.log capped at {MAX_LOG_BYTES} bytes; further output not kept]\n".encode())
            self._log_capped = True
            return
        self._file.write(data)
        self._logged += len(data)

    def _emit(self, raw: bytes) -> None:
        if self._events_capped:
            return
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " [...]"
        if self._evented + len(text) > MAX_EVENT_CHARS:
            self._events_capped = True
            text = "[setup output is no longer streamed; the rest is in setup.log]"
        self._evented += len(text)
        self._events.emit(LogEvent(stream="setup", text=text))


def run_setup(workspace: Path, output: Path, timeout_s: float, events: EventSink) -> SetupOutcome:
    """Run `setup.sh` if the workspace has one; always leaves `setup.log` in `output`."""
    script = workspace / SETUP_SCRIPT
    log_path = output / SETUP_LOG
    if not script.is_file():
        log_path.write_text(f"No {SETUP_SCRIPT} in the workspace; setup skipped.\n")
        return SetupOutcome(ran=False, ok=True)
    events.emit(PhaseEvent("SETTING_UP"))
    log.info("running %s (timeout %g s)", SETUP_SCRIPT, timeout_s)
    started = time.monotonic()
    with open(log_path, "wb") as logfile:
        sink = _LineSink(logfile, events)
        try:
            finished = run_process(["bash", SETUP_SCRIPT], cwd=workspace, timeout_s=timeout_s, stdout=sink)
        except OSError as exc:
            reason = f"{SETUP_SCRIPT} could not be started: {exc.strerror or exc}"
            sink.finish(reason)
            return SetupOutcome(ran=True, ok=False, reason=reason)
        took = time.monotonic() - started
        if finished.timed_out:
            reason = f"{SETUP_SCRIPT} timed out after {timeout_s:g} s"
            sink.finish(f"{reason}; it was killed with every process it started")
        elif finished.signal is not None:
            reason = f"{SETUP_SCRIPT} was killed by signal {finished.signal} (see setup.log)"
            sink.finish(reason)
        elif finished.exit_code != 0:
            reason = f"{SETUP_SCRIPT} exited with status {finished.exit_code} (see setup.log)"
            sink.finish(f"{SETUP_SCRIPT} exited with status {finished.exit_code} after {took:.1f} s")
        else:
            sink.finish(f"{SETUP_SCRIPT} finished successfully in {took:.1f} s")
            log.info("setup finished in %.1f s", took)
            return SetupOutcome(ran=True, ok=True)
    log.warning("setup failed: %s", reason)
    return SetupOutcome(ran=True, ok=False, reason=reason)
