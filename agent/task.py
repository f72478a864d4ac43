"""One task from spec to outputs: setup, baseline, the loop, and the outputs the worker collects.

The order matters for two promises:

- *Fast first request.* Recording the baseline hashes the whole workspace (a second or more for a big
  one), so it runs in a thread while the main thread sends the first model request and waits for the
  answer. The loop waits for the baseline only before running its first tool, so no change can slip
  into the baseline.
- *Outputs whatever happens.* The loop's end, a failure of the model or the gateway, a bug, or SIGTERM
  from the worker all lead to the same `_finish`: phase UPLOADING, then `diff.patch`, `summary.md`,
  and `result.json` last (its presence means the others are complete). A failed setup finishes the
  same way, with an empty diff.

Exit status: 0 when the task completed, 1 when it failed (the reason is in `result.json`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from agent.baseline import BaselineError, ShadowRepo
from agent.events import EventSender, EventSink
from agent.gateway import GatewayConnection
from agent.instructions import discover_agents_files, render_prompt_file, system_prompt
from agent.llm import GatewayModel
from agent.loop import AgentLoop, Outcome
from agent.paths import Workspace
from agent.setup_phase import run_setup
from agent.signals import Terminated
from agent.tools import Toolbox
from agent.wire import RESULT_FILE, AgentResult, AgentTaskSpec, PhaseEvent

log = logging.getLogger(__name__)

# A model may take minutes to answer a long prompt; the gateway enforces the task's wall time anyway.
LLM_TIMEOUT_S = 600.0
EVENTS_TIMEOUT_S = 10.0


def _write(path: Path, data: bytes) -> None:
    """Write via a temporary name so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Task:
    def __init__(self, spec: AgentTaskSpec, events: EventSink, state_dir: Path | None = None) -> None:
        self.spec = spec
        self.events = events
        self._state_dir = state_dir
        self.output = Path(spec.output)
        self.workspace = Workspace(spec.workspace)
        self.repo: ShadowRepo | None = None
        self.model: GatewayModel | None = None
        self._baseline: Future[str] | None = None

    def run(self) -> AgentResult:
        spec = self.spec
        log.info("task %s: model %s, at most %d steps, workspace %s", spec.task_id, spec.model, spec.max_steps,
                 self.workspace.root)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-baseline")
        try:
            return self._finish(self._work(pool))
        finally:
            if self.model is not None:
                self.model.close()
            pool.shutdown(wait=True)
            if self.repo is not None:
                self.repo.remove()
            elif self._state_dir is not None:  # setup failed before the repository was used
                shutil.rmtree(self._state_dir, ignore_errors=True)

    def _work(self, pool: ThreadPoolExecutor) -> Outcome:
        """Setup and the loop; every way they can end becomes an `Outcome`."""
        steps = 0
        try:
            setup = run_setup(self.workspace.root, self.output, self.spec.setup_timeout_s, self.events)
            if not setup.ok:
                return Outcome("failed", setup.reason, f"The task failed during setup: {setup.reason}.\n", 0)
            loop = self._prepare(pool)
            try:
                return loop.run()
            finally:
                steps = loop.steps
        except Terminated as exc:
            return Outcome("failed", f"the agent was stopped by {exc}",
                           f"The agent was stopped by {exc} before it finished.\n", steps)
        except BaselineError as exc:
            return Outcome("failed", f"could not record the workspace baseline: {exc}",
                           "The agent could not record the workspace before starting.\n", steps)
        except Exception as exc:
            log.exception("the agent failed")
            return Outcome("failed", f"internal agent error: {exc.__class__.__name__}: {exc}",
                           "The agent failed with an internal error (see agent.log).\n", steps)

    def _prepare(self, pool: ThreadPoolExecutor) -> AgentLoop:
        spec = self.spec
        repo = self.repo = ShadowRepo(self.workspace.root, self._state_dir)
        repo.init()
        agents = discover_agents_files(self.workspace, repo.list_files)
        if agents:
            log.info("AGENTS.md files: %s", ", ".join(a.path for a in agents))
        toolbox = Toolbox(self.workspace, repo.list_files, command_timeout_s=spec.command_timeout_s,
                          output_limit=spec.tool_output_limit)
        system = system_prompt(workspace_root=str(self.workspace.root), tool_names=toolbox.names,
                               agents_files=agents, focus_paths=spec.focus_paths, focus_range=spec.focus_range)
        _write(self.output / "prompt.txt", render_prompt_file(system, spec.instruction).encode())
        # Nothing has touched the workspace since setup, so the baseline can start this late: it then
        # overlaps the model's first answer without competing with the work above for the CPU.
        started = time.monotonic()
        baseline = self._baseline = pool.submit(repo.record_baseline)

        def recorded(future: Future[str]) -> None:
            if not future.cancelled() and future.exception() is None:
                log.info("baseline recorded in %.2f s", time.monotonic() - started)

        baseline.add_done_callback(recorded)
        self.events.emit(PhaseEvent("RUNNING"))
        model = self.model = GatewayModel(GatewayConnection(spec.gateway_socket, spec.token, LLM_TIMEOUT_S,
                                                            url=spec.gateway_url), spec.model)
        return AgentLoop(model, toolbox, self.events, system_prompt=system, instruction=spec.instruction,
                         max_steps=spec.max_steps, ready=baseline.result)

    def _finish(self, outcome: Outcome) -> AgentResult:
        self.events.emit(PhaseEvent("UPLOADING"))
        status: Literal["completed", "failed"] = outcome.status
        reason = outcome.reason
        summary = outcome.summary or "(The agent finished without a final message.)\n"
        diff = b""
        files_changed = 0
        if self.repo is not None and self._baseline is not None:
            try:
                self._baseline.result()
                diff = self.repo.diff()
                files_changed = len(self.repo.changed_paths())
            except Exception as exc:  # the outputs must still be written
                log.error("cannot compute the diff: %s", exc)
                if status == "completed":
                    status, reason = "failed", f"could not compute the diff: {exc}"
        _write(self.output / "diff.patch", diff)
        _write(self.output / "summary.md", summary.encode("utf-8", errors="replace"))
        result = AgentResult(status=status, reason=reason, files_changed=files_changed, steps=outcome.steps)
        _write(self.output / RESULT_FILE, result.to_json())
        log.info("task %s %s after %d step(s), %d file(s) changed%s", self.spec.task_id, status, outcome.steps,
                 files_changed, f": {reason}" if reason else "")
        return result


def run_task(spec: AgentTaskSpec, state_dir: Path | None = None) -> int:
    """Run the task; returns the process exit status.

    `state_dir` is a shadow-repository folder prepared ahead of time (`baseline.init_state_dir`).
    """
    Path(spec.output).mkdir(parents=True, exist_ok=True)
    sender = EventSender(GatewayConnection(spec.gateway_socket, spec.token, EVENTS_TIMEOUT_S,
                                                 url=spec.gateway_url)).start()
    try:
        result = Task(spec, sender, state_dir).run()
    finally:
        sender.close()
    return 0 if result.status == "completed" else 1
