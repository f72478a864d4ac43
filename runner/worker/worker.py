"""The worker loop: one delivery at a time per slot, each task attempt in its own sandbox.

For each delivery: PREPARING (attempt recorded; a Git or zip task's source cloned or unpacked and its
manifest recorded, once: `runner.sources.fetcher`) → open an LLM session at the gateway (per-task token and
budget) → `Executor.run` (the agent reports SETTING_UP / RUNNING / UPLOADING itself through the gateway)
→ close the session (transcript) → store the artifacts → a final state with a reason → ack.

The queue decides retries: a `TemporaryError` (a dependency down) naks with its delay; anything else
ends the task FAILED with a reason first and then acks, so a task never hangs unreported. Cancellation
arrives in process (`TaskService.on_cancel`) or through the record's `cancel_requested` flag, which the
worker polls while the sandbox runs; either way the sandbox is killed and the task ends CANCELLED.

Attempts are fenced. Every delivery of a task is an attempt, numbered by the queue and written into the
record when it starts. If the record's attempt moves past this delivery's while the sandbox runs (the
queue gave the task to another worker because this one missed its heartbeats: a pause, a partition),
this worker stops its sandbox and walks away without writing a state, a result or an ack, and every
state change it makes is conditional on the record still being at its attempt: one task, one result.

Stopping (`stop()`): no new deliveries are taken; a delivery still being handled when its slot is
cancelled is handed back to the queue at once (`nak(0)`), so another worker starts it as its next
attempt instead of waiting out the ack deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from agent.wire import AgentResult, AgentTaskSpec, WireError
from runner.domain import models as m
from runner.domain.errors import CodexError, FailedPrecondition, NotFound, TemporaryError
from runner.gateway.budget import Budget
from runner.gateway.session import SessionReport
from runner.ports import BlobStore, Delivery, Executor, SandboxJob, SandboxOutcome, TaskQueue
from runner.sources.fetcher import SourceFetcher
from runner.tasks.service import TaskService
from runner.worker.sessions import LLMSessions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 2
    heartbeat_s: float = 10.0
    cancel_poll_s: float = 1.0
    tool_output_limit: int = 16_000


class _Cancelled(Exception):
    pass


class _Superseded(Exception):
    """The task moved on to a later attempt (another worker has it)."""


class Worker:
    def __init__(self, service: TaskService, queue: TaskQueue, executor: Executor, sessions: LLMSessions,
                 config: WorkerConfig | None = None, blobs: BlobStore | None = None,
                 sources: SourceFetcher | None = None) -> None:
        self._service = service
        # Where the worker stores what it makes (the transcript, notes for missing artifacts).
        self._blobs = blobs or service.blobs
        self._queue = queue
        self._executor = executor
        self._sessions = sessions
        self._config = config or WorkerConfig()
        # Fetches Git and zip sources (None: such tasks fail with a reason).
        self._sources = sources
        self._running: dict[str, asyncio.Task[SandboxOutcome]] = {}
        self._cancelled: set[str] = set()
        self._stopping = asyncio.Event()
        service.on_cancel(self._on_cancel)

    async def _on_cancel(self, task_id: str) -> None:
        run = self._running.get(task_id)
        if run is not None:
            self._cancelled.add(task_id)
            run.cancel()

    async def run(self) -> None:
        """Serve until `stop()`; then finish the deliveries in hand."""
        slots = [asyncio.create_task(self._slot(i), name=f"worker-slot-{i}")
                 for i in range(self._config.concurrency)]
        try:
            await asyncio.gather(*slots)
        finally:
            for slot in slots:
                slot.cancel()
            await asyncio.gather(*slots, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    async def _slot(self, index: int) -> None:
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                receiving = asyncio.ensure_future(self._queue.receive(timeout_s=5.0))
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():  # stopping: take no new work
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        delivery = await receiving
                        if delivery is not None:  # it arrived as we stopped: hand it back at once
                            await delivery.nak(0)
                    return
                await self._serve_one(index, receiving)
        finally:
            stopping.cancel()

    async def _serve_one(self, index: int, receiving: asyncio.Future[Delivery | None]) -> None:
        try:
            delivery = receiving.result()
        except TemporaryError as exc:
            log.warning("queue unavailable", extra={"error": str(exc), "slot": index})
            await asyncio.sleep(exc.delay_s or 1.0)
            return
        if delivery is None:
            return
        try:
            await self.handle(delivery)
        except Exception:
            log.exception("delivery handling failed", extra={"task_id": delivery.task.task_id})

    async def handle(self, delivery: Delivery) -> None:
        task_id = delivery.task.task_id
        try:
            await self._handle(delivery)
        except asyncio.CancelledError:
            if self._stopping.is_set():
                # Stopped with the task in hand: give it back now rather than after the ack deadline.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._hand_back(delivery))
            raise
        except _Superseded:
            log.warning("task taken over by a later attempt; this attempt stops without a result",
                        extra={"task_id": task_id, "attempt": delivery.attempt})
            return
        except TemporaryError as exc:
            log.warning("task will be retried", extra={"task_id": task_id, "error": str(exc)})
            await delivery.nak(exc.delay_s)
            return
        except Exception as exc:
            reason = str(exc) if isinstance(exc, CodexError) else f"internal error: {type(exc).__name__}: {exc}"
            log.exception("task failed", extra={"task_id": task_id})
            with contextlib.suppress(Exception):
                await self._service.finish(task_id, m.TaskState.FAILED, reason, if_attempt=delivery.attempt)
            await delivery.term()
            return
        await delivery.ack()

    async def _hand_back(self, delivery: Delivery) -> None:
        await delivery.nak(0)
        await self._service.events.append(delivery.task.task_id, m.LogLine(
            "runner", f"attempt {delivery.attempt} stopped: its worker is shutting down; the task goes back "
                      "to the queue"))
        log.info("task handed back", extra={"task_id": delivery.task.task_id, "attempt": delivery.attempt})

    async def _handle(self, delivery: Delivery) -> None:
        task_id = delivery.task.task_id
        try:
            record = await self._service.store.get(task_id)
        except NotFound:
            log.warning("delivery for an unknown task dropped", extra={"task_id": task_id})
            return
        if record.state.final:
            return
        if record.cancel_requested:
            await self._service.finish(task_id, m.TaskState.CANCELLED, "cancelled by the user")
            return
        prepared = await self._service.transition(
            task_id, m.TaskState.PREPARING,
            "" if delivery.attempt == 1 else f"attempt {delivery.attempt} after the previous one was lost",
            update=lambda r: replace(r, attempt=delivery.attempt))
        if prepared is None:  # cancelled or ended meanwhile
            return
        record = prepared
        log.info("task started", extra={"task_id": task_id, "attempt": delivery.attempt})
        if record.manifest_digest is None:
            fetched = await self._fetch_source(record, delivery.attempt)
            if fetched is None:
                return
            record, manifest = fetched
        else:
            manifest = await self._service.load_manifest(record.tenant, record.manifest_digest)
        token = self._sessions.open_session(task_id, record.tenant, Budget.from_limits(record.limits))
        report: SessionReport | None = None
        outcome: SandboxOutcome | None = None
        cancelled = False
        try:
            spec = AgentTaskSpec(
                task_id=task_id, token=token, instruction=record.instruction, model=record.model,
                max_steps=record.limits.max_steps, command_timeout_s=record.limits.command_timeout_s,
                setup_timeout_s=record.limits.setup_timeout_s, tool_output_limit=self._config.tool_output_limit,
                focus_paths=record.focus_paths, focus_range=record.focus_range)
            job = SandboxJob(task=record, attempt=delivery.attempt, manifest=manifest,
                             agent_spec_json=spec.to_json(), notes=self._notes_for(task_id))
            try:
                outcome = await self._run_sandbox(task_id, job, delivery)
            except _Cancelled:
                cancelled = True
        finally:
            report = await self._sessions.close_session(task_id)
        await self._conclude(record, delivery.attempt, outcome, report, cancelled)

    async def _fetch_source(self, record: m.TaskRecord, attempt: int) -> tuple[m.TaskRecord, m.Manifest] | None:
        """Clone or unpack a Git or zip task's source, record its manifest (and commit); None when the
        task moved on meanwhile. A later attempt finds the manifest recorded and does not fetch again."""
        if self._sources is None:
            raise FailedPrecondition("this worker cannot fetch Git or zip sources")
        fetched = await self._sources.fetch(record, attempt, self._blobs)
        digest = await self._service.put_manifest(record.tenant, fetched.manifest)

        def fill(r: m.TaskRecord) -> m.TaskRecord:
            return replace(r, manifest_digest=digest, source=replace(
                r.source, base_commit=fetched.base_commit or r.source.base_commit))

        stored = await self._service.transition(record.id, m.TaskState.PREPARING, update=fill, if_attempt=attempt)
        if stored is None:
            current = await self._service.store.get(record.id)
            if current.attempt != attempt:
                raise _Superseded
            return None
        await self._service.events.append(record.id, m.LogLine("runner", fetched.note))
        return stored, fetched.manifest

    def _notes_for(self, task_id: str) -> Callable[[str], Awaitable[None]]:
        async def note(text: str) -> None:
            await self._service.events.append(task_id, m.LogLine("runner", text))

        return note

    async def _run_sandbox(self, task_id: str, job: SandboxJob, delivery: Delivery) -> SandboxOutcome:
        run = asyncio.create_task(self._executor.run(job), name=f"sandbox-{task_id}")
        self._running[task_id] = run
        try:
            last_beat = asyncio.get_running_loop().time()
            while True:
                done, _ = await asyncio.wait({run}, timeout=self._config.cancel_poll_s)
                if done:
                    break
                now = asyncio.get_running_loop().time()
                if now - last_beat >= self._config.heartbeat_s:
                    last_beat = now
                    with contextlib.suppress(TemporaryError):
                        await delivery.in_progress()
                current = await self._service.store.get(task_id)
                if current.attempt != job.attempt:
                    run.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await run
                    raise _Superseded
                if current.cancel_requested or current.state.final:
                    self._cancelled.add(task_id)
                    run.cancel()
            try:
                return run.result()
            except asyncio.CancelledError:
                if task_id in self._cancelled:
                    raise _Cancelled from None
                raise
        finally:
            self._running.pop(task_id, None)
            self._cancelled.discard(task_id)
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run

    async def _conclude(self, record: m.TaskRecord, attempt: int, outcome: SandboxOutcome | None,
                        report: SessionReport, cancelled: bool) -> None:
        task_id = record.id
        artifacts = {a.name: a for a in (outcome.artifacts if outcome else ())}
        blobs = self._blobs
        artifacts["llm_response.txt"] = m.ArtifactRef(
            "llm_response.txt", await blobs.put_bytes(record.tenant, report.transcript))
        result: AgentResult | None = None
        if outcome is not None and outcome.result_json:
            try:
                result = AgentResult.from_json(outcome.result_json)
            except WireError as exc:
                log.warning("agent result unreadable", extra={"task_id": task_id, "error": str(exc)})

        if cancelled:
            state, reason = m.TaskState.CANCELLED, "cancelled by the user"
        elif outcome is None:
            state, reason = m.TaskState.FAILED, "the sandbox did not run"
        elif outcome.timed_out:
            state, reason = m.TaskState.TIMED_OUT, (
                f"the task ran past its wall-time limit of {record.limits.wall_time_s:g} s and was stopped")
        elif result is not None and result.status == "completed" and outcome.exit_code == 0:
            state, reason = m.TaskState.COMPLETED, ""
        elif result is not None and result.status == "failed":
            state, reason = m.TaskState.FAILED, result.reason or "the agent reported a failure; see agent.log"
        else:
            state, reason = m.TaskState.FAILED, (
                f"the agent ended without a result ({outcome.detail or f'exit code {outcome.exit_code}'}); "
                "see agent.log")
        if report.budget_exceeded and state is not m.TaskState.CANCELLED:
            state, reason = m.TaskState.FAILED, report.budget_exceeded

        for name in m.ARTIFACT_NAMES:
            if name not in artifacts:
                note = _missing_note(name, state, reason)
                artifacts[name] = m.ArtifactRef(name, await blobs.put_bytes(record.tenant, note.encode()))
        files_changed = result.files_changed if result else 0
        ordered = tuple(artifacts[n] for n in m.ARTIFACT_NAMES)

        def finalize(r: m.TaskRecord) -> m.TaskRecord:
            return replace(r, artifacts=ordered, usage=report.usage, files_changed=files_changed)

        if state is m.TaskState.COMPLETED:
            await self._service.transition(task_id, m.TaskState.UPLOADING, if_attempt=attempt)
        if await self._service.finish(task_id, state, reason, update=finalize, if_attempt=attempt) is None:
            current = await self._service.store.get(task_id)
            if current.attempt != attempt:
                raise _Superseded


def _missing_note(name: str, state: m.TaskState, reason: str) -> str:
    if name == "diff.patch":
        return ""
    why = f"the task ended {state.value}" + (f": {reason}" if reason else "")
    return f"({name} was not produced: {why})\n"
