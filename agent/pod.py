"""`python -m agent.pod --task-dir /run/codex/task --workspace /workspace --output /output`: the agent
container of a Kubernetes pod.

1. Reads `spec.json` (an `AgentTaskSpec`; its workspace and output are replaced by the arguments) and
   `transfer.json` (`pod_transfer`) from the task folder (the task's Secret, mounted read-only).
2. Runs the agent as a local sandbox does: `python -m agent`, the spec as one line on its stdin, its
   stdout and stderr passed on to this container's stdout (the container log) and kept, bounded, as
   `agent.log` in a private temp folder (`pod_log`). SIGTERM and SIGINT are passed on to the agent,
   which then stops and still writes its outputs. As the container's first process this one also reaps
   any process the agent leaves orphaned.
3. Uploads, each by one PUT to its presigned URL (retried with backoff on connection errors and 5xx;
   a 4xx is final), every file of the output folder that the wire contract names
   (`agent.wire.OUTPUT_FILES`) and `transfer.json` has a URL for, then `agent.log`; `result.json` goes
   last of the agent's files, since its presence says the others are complete. Only regular files are
   sent (a symlink or FIFO of that name is refused with a note); other names are never sent.

Exit status: the agent's (0 task completed, 1 task failed, 2 unusable spec, 128+N killed by signal N),
so Kubernetes sees it; 2 also when spec.json or transfer.json cannot be used (the agent is not
started); 70 when an upload failed for good; 71 when the agent could not be started. The last word is
one line on stderr, also written to /dev/termination-log when that file is writable (the container's
termination message). URLs are credentials and the token too: neither is ever printed.

`--agent-command` replaces `python -m agent` for tests and debugging only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from agent.pod_io import (
    ATTEMPTS,
    BACKOFF_S,
    TIMEOUT_S,
    Refused,
    Retryable,
    parse_arguments,
    put_file,
    report,
    scrub,
    with_retries,
)
from agent.pod_log import TeeLog
from agent.pod_transfer import AGENT_LOG, TaskFileError, Transfer, read_task_file
from agent.wire import OUTPUT_FILES, RESULT_FILE, AgentTaskSpec, WireError

log = logging.getLogger("agent.pod")

EXIT_USAGE = 2
EXIT_UPLOAD = 70
EXIT_NO_AGENT = 71
# After the agent exits, how long its output may take to reach its end (a process it left behind may
# hold the pipe open for ever).
LOG_DRAIN_S = 2.0
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _Unusable(Exception):
    """The task folder cannot be used; the agent is not started."""


@dataclasses.dataclass(frozen=True, slots=True)
class Uploads:
    sent: tuple[str, ...]
    failed: tuple[str, ...]  # "name: why"
    notes: tuple[str, ...]


def read_task(task_dir: Path, workspace: Path, output: Path) -> tuple[AgentTaskSpec, Transfer]:
    spec_path = task_dir / "spec.json"
    try:
        spec = AgentTaskSpec.from_json(read_task_file(spec_path))
        transfer = Transfer.read(task_dir / "transfer.json")
    except TaskFileError as exc:
        raise _Unusable(str(exc)) from None
    except WireError as exc:  # shape errors name fields, never values: the token stays out
        raise _Unusable(f"{spec_path}: {exc}") from None
    return dataclasses.replace(spec, workspace=str(workspace), output=str(output)), transfer


class _Forwarder:
    """SIGTERM/SIGINT handlers that pass the signal on to the agent (or hold it until it has started)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.exited = False
        self.pending: int | None = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def started(self, pid: int) -> None:
        self.pid = pid
        if self.pending is not None:
            self._send(self.pending)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        log.info("passing %s on to the agent", signal.Signals(signum).name)
        self.pending = signum
        if self.pid is not None:
            self._send(signum)

    def _send(self, signum: int) -> None:
        if self.pid is not None and not self.exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)


def run_agent(command: list[str], spec: AgentTaskSpec, agent_log: TeeLog, forwarder: _Forwarder) -> int:
    """Start the agent, hand it the spec, and wait for it (reaping orphans meanwhile); its exit status
    in the shell's terms (128+N for a signal). Raises `OSError` when it cannot be started."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=spec.workspace)
    assert proc.stdin is not None and proc.stdout is not None
    forwarder.started(proc.pid)
    pump = threading.Thread(target=agent_log.pump, args=(proc.stdout.fileno(),), name="agent-log", daemon=True)
    pump.start()
    try:
        proc.stdin.write(spec.to_json() + b"\n")
        proc.stdin.close()
    except BrokenPipeError:
        log.warning("the agent exited before reading its task spec")
    status = _reap_until(proc.pid)
    forwarder.exited = True
    proc.returncode = status  # reaped here: Popen must not wait for it again
    pump.join(LOG_DRAIN_S)
    if pump.is_alive():
        log.warning("the agent's output did not reach its end (a process it started still holds it); "
                    "agent.log is closed without the rest")
    agent_log.finish()
    return 128 - status if status < 0 else status


def _reap_until(pid: int) -> int:
    """Wait for `pid`, reaping any other child on the way (orphans reparented to the container's first
    process); its status as `Popen.returncode` gives it (negative for a signal)."""
    while True:
        done, status = os.waitpid(-1, 0)
        if done == pid:
            return os.waitstatus_to_exitcode(status)


def upload_outputs(transfer: Transfer, output: Path, agent_log: Path, *, timeout_s: float = TIMEOUT_S,
                   attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S) -> Uploads:
    sent: list[str] = []
    failed: list[str] = []
    notes: list[str] = []
    ignored = sorted(set(transfer.outputs) - {*OUTPUT_FILES, AGENT_LOG})
    if ignored:
        notes.append(f"transfer.json has URLs for names that are not outputs, not used: {', '.join(ignored)}")
    order = [n for n in OUTPUT_FILES if n != RESULT_FILE] + [RESULT_FILE, AGENT_LOG]
    for name in order:
        url = transfer.outputs.get(name)
        if url is None:
            continue
        path = agent_log if name == AGENT_LOG else output / name
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            continue
        except OSError as exc:
            notes.append(f"not uploaded {name}: cannot open it ({exc.strerror}; a symlink is never followed)")
            continue
        with os.fdopen(fd, "rb") as source:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                notes.append(f"not uploaded {name}: not a regular file")
                continue
            os.set_blocking(fd, True)
            try:
                with_retries(f"uploading {name}", functools.partial(put_file, url, source, st.st_size, timeout_s),
                             attempts=attempts, backoff_s=backoff_s)
            except (Retryable, Refused) as exc:
                failed.append(scrub(f"{name}: {exc}", transfer.outputs.values()))
                continue
        sent.append(name)
        log.info("uploaded %s (%d bytes)", name, st.st_size)
    return Uploads(tuple(sent), tuple(failed), tuple(notes))


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent.pod", description="The agent container of a pod: run the "
                                     "agent on the task in --task-dir, then upload its outputs.")
    parser.add_argument("--task-dir", required=True, type=Path, help="the folder with spec.json and transfer.json")
    parser.add_argument("--workspace", required=True, type=Path, help="the snapshot, unpacked (the agent's workspace)")
    parser.add_argument("--output", required=True, type=Path, help="where the agent leaves its outputs")
    parser.add_argument("--agent-command", default="",
                        help="for tests and debugging only: the command run instead of `python -m agent` "
                             "(split like a shell would; it gets the spec on stdin)")
    return parse_arguments(parser, argv, "each upload")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        return _main(args)
    except Exception as exc:
        log.debug("unexpected failure", exc_info=True)
        report(f"agent pod failed unexpectedly: {exc.__class__.__name__}: {exc}", args.termination_log)
        return EXIT_NO_AGENT


def _main(args: argparse.Namespace) -> int:
    forwarder = _Forwarder()
    forwarder.install()
    try:
        spec, transfer = read_task(args.task_dir, args.workspace, args.output)
        args.output.mkdir(parents=True, exist_ok=True)
    except _Unusable as exc:
        report(f"agent pod: {exc}", args.termination_log)
        return EXIT_USAGE
    except OSError as exc:
        report(f"agent pod: cannot make the output folder {args.output}: {exc.strerror or exc}", args.termination_log)
        return EXIT_USAGE
    command = shlex.split(args.agent_command) if args.agent_command else [sys.executable, "-m", "agent"]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agent-pod-") as private:
        agent_log = TeeLog(Path(private) / AGENT_LOG, sys.stdout.buffer)
        try:
            status = run_agent(command, spec, agent_log, forwarder)
        except OSError as exc:
            agent_log.finish()
            report(f"agent pod: cannot start the agent ({command[0]}): {exc.strerror or exc}", args.termination_log)
            return EXIT_NO_AGENT
        log.info("the agent exited with status %d after %.1f s", status, time.monotonic() - started)
        uploads = upload_outputs(transfer, args.output, agent_log.path, timeout_s=args.timeout,
                                 attempts=args.attempts, backoff_s=args.backoff)
    for note in uploads.notes:
        log.warning("%s", note)
    if uploads.failed:
        count = len(uploads.failed) + len(uploads.sent)
        report(f"agent pod: the agent exited with status {status}, but {len(uploads.failed)} of {count} uploads "
               f"failed: {'; '.join(uploads.failed)}", args.termination_log)
        return EXIT_UPLOAD
    report(f"agent pod: the agent exited with status {status}; uploaded {', '.join(uploads.sent) or 'nothing'}",
           args.termination_log)
    return status


if __name__ == "__main__":
    sys.exit(main())
