"""The `codex.runner.v1.Runner` servicer: thin handlers that translate and call `TaskService`.

Errors are the runner's own classes, mapped onto gRPC status codes in one place (`_rpc`), with the
message a person reads. Uploads stream straight into the BlobStore: each blob is verified against its
digest before it becomes visible, so a failed or lying upload never corrupts what is stored.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeAlias, TypeVar

from grpc import aio

from runner._proto.codex.runner.v1 import runner_pb2 as pb
from runner._proto.codex.runner.v1 import runner_pb2_grpc as pb_grpc
from runner.api import codec
from runner.api.auth import caller
from runner.api.errors import status_of
from runner.auth.principal import Action, Principal, require
from runner.domain import models as m
from runner.domain.errors import CodexError, FailedPrecondition, InvalidArgument
from runner.ports import BlobStore, BlobWriter
from runner.pulls.models import PullRequestRequest
from runner.pulls.service import PullRequestService
from runner.tasks.service import TaskRequest, TaskService
from runner.web.links import PageLinks

log = logging.getLogger(__name__)

# grpc ships no type information; its context is Any to the type checker.
Ctx: TypeAlias = Any
R = TypeVar("R")
ARTIFACT_CHUNK = 1 << 20
COMMITS_IN_FLIGHT = 64
MAX_DIGESTS_PER_CALL = 200_000


def _rpc(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: Ctx) -> R:
        try:
            return await fn(self, request, context)
        except CodexError as exc:
            await context.abort(status_of(exc), str(exc))
            raise AssertionError("unreachable") from exc
    return wrapper


def _limits_from_pb(msg: pb.TaskLimits) -> m.TaskLimits:
    return m.TaskLimits(wall_time_s=msg.wall_time_seconds, max_steps=msg.max_steps,
                        max_llm_requests=msg.max_llm_requests, max_llm_tokens=msg.max_llm_tokens,
                        command_timeout_s=msg.command_timeout_seconds)


class _Upload:
    """One UploadBlobs stream: blobs arrive as ordered chunks; each is verified by its writer's commit.

    Commits run concurrently (up to `COMMITS_IN_FLIGHT`), and the whole small blobs of one message are
    stored as one batch: with many small files, waiting for each one's verification and rename before
    reading the next chunk would leave the store idle between blobs.
    """

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._writer: BlobWriter | None = None
        self._current: m.Digest | None = None
        self._offset = 0
        # Commits and batches under way; each yields (blobs, bytes) stored.
        self._commits: set[asyncio.Task[tuple[int, int]]] = set()
        self.stored = 0
        self.stored_bytes = 0

    async def message(self, tenant: str, chunks: Sequence[pb.BlobChunk]) -> None:
        """Whole small blobs of a message are stored together in one batch; the others stream through
        a writer, chunk by chunk."""
        batch: list[tuple[m.Digest, bytes]] = []
        for chunk in chunks:
            if self._writer is None and chunk.offset == 0 and chunk.last:
                digest = codec.digest_from_pb(chunk.digest, "chunk digest")
                if len(chunk.data) != digest.size:
                    raise InvalidArgument(f"blob {digest} arrived with {len(chunk.data)} bytes")
                batch.append((digest, chunk.data))
                continue
            if batch:
                self._start(self._put_many(tenant, batch))
                batch = []
            await self.chunk(tenant, chunk)
        if batch:
            self._start(self._put_many(tenant, batch))
        if len(self._commits) >= COMMITS_IN_FLIGHT:
            await self._settle(asyncio.FIRST_COMPLETED)

    async def _put_many(self, tenant: str, batch: list[tuple[m.Digest, bytes]]) -> tuple[int, int]:
        await self._blobs.put_many(tenant, batch)
        return len(batch), sum(d.size for d, _ in batch)

    def _start(self, work: Coroutine[Any, Any, tuple[int, int]]) -> None:
        self._commits.add(asyncio.create_task(work))

    async def chunk(self, tenant: str, chunk: pb.BlobChunk) -> None:
        digest = codec.digest_from_pb(chunk.digest, "chunk digest")
        if self._current is None or digest != self._current:
            if self._writer is not None:
                raise InvalidArgument(f"blob {self._current} ended without a chunk marked last")
            if chunk.offset != 0:
                raise InvalidArgument(f"blob {digest} starts at offset {chunk.offset}, not 0")
            self._writer = await self._blobs.writer(tenant, digest)
            self._current, self._offset = digest, 0
        elif chunk.offset != self._offset:
            raise InvalidArgument(f"blob {digest}: chunk at offset {chunk.offset}, expected {self._offset}")
        writer = self._writer
        assert writer is not None
        if chunk.data:
            await writer.write(chunk.data)
        self._offset += len(chunk.data)
        if chunk.last:
            self._writer, self._current = None, None
            self._start(self._commit(writer, digest))
            if len(self._commits) >= COMMITS_IN_FLIGHT:
                await self._settle(asyncio.FIRST_COMPLETED)

    @staticmethod
    async def _commit(writer: BlobWriter, digest: m.Digest) -> tuple[int, int]:
        await writer.commit()
        return 1, digest.size

    async def _settle(self, when: str) -> None:
        done, self._commits = await asyncio.wait(self._commits, return_when=when)
        failure: BaseException | None = None
        for task in done:
            exc = task.exception()
            if exc is None:
                blobs, size = task.result()
                self.stored += blobs
                self.stored_bytes += size
            elif failure is None:
                failure = exc
        if failure is not None:
            raise failure

    async def finish(self) -> None:
        if self._writer is not None:
            raise InvalidArgument(f"the stream ended in the middle of blob {self._current}")
        if self._commits:
            await self._settle(asyncio.ALL_COMPLETED)

    async def abort(self) -> None:
        """Stop: the blob being written is discarded; commits under way finish (each is all or nothing)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.abort()
        if self._commits:
            await asyncio.wait(self._commits)
            for task in self._commits:
                if not task.cancelled():
                    task.exception()  # retrieved: a failure here was already reported or is moot
            self._commits = set()


class RunnerServicer(pb_grpc.RunnerServicer):
    def __init__(self, service: TaskService, pulls: PullRequestService | None = None,
                 pages: PageLinks | None = None) -> None:
        self._service = service
        self._pulls = pulls
        self._pages = pages  # the task pages' links; None when the runner has no HTTP side

    @property
    def _page_base(self) -> str:
        """The task pages' base URL for `Task.page_url` ("" without an HTTP side)."""
        return self._pages.base_url if self._pages is not None else ""

    @staticmethod
    def _principal(context: Ctx) -> Principal:
        """The caller, as `AuthInterceptor` admitted it (tenant, roles, token id)."""
        return caller()

    def _tenant(self, context: Ctx) -> str:
        return self._principal(context).tenant

    @_rpc
    async def FindMissingBlobs(self, request: pb.FindMissingBlobsRequest, context: Ctx) -> pb.FindMissingBlobsResponse:
        tenant = self._tenant(context)
        if len(request.digests) > MAX_DIGESTS_PER_CALL:
            raise InvalidArgument(f"{len(request.digests)} digests in one call; the limit is {MAX_DIGESTS_PER_CALL}")
        digests = [codec.digest_from_pb(d) for d in request.digests]
        missing = await self._service.blobs.find_missing(tenant, digests)
        return pb.FindMissingBlobsResponse(missing=[codec.digest_to_pb(d) for d in missing])

    async def UploadBlobs(self, request_iterator: AsyncIterator[pb.UploadBlobsRequest],
                          context: Ctx) -> pb.UploadBlobsResponse:
        upload = _Upload(self._service.blobs)
        try:
            tenant = self._tenant(context)
            async for message in request_iterator:
                await upload.message(tenant, message.chunks)
            await upload.finish()
        except CodexError as exc:
            await upload.abort()
            await context.abort(status_of(exc), str(exc))
        finally:
            await upload.abort()
        return pb.UploadBlobsResponse(blobs_stored=upload.stored, bytes_stored=upload.stored_bytes)

    @_rpc
    async def CreateTask(self, request: pb.CreateTaskRequest, context: Ctx) -> pb.CreateTaskResponse:
        tenant = self._tenant(context)
        which = request.WhichOneof("source")
        req = TaskRequest(
            instruction=request.instruction,
            model=request.model,
            manifest_digest=(codec.digest_from_pb(request.manifest_digest, "manifest_digest")
                             if which == "manifest_digest" else None),
            manifest=codec.manifest_from_pb(request.manifest) if which == "manifest" else None,
            limits=_limits_from_pb(request.limits) if request.HasField("limits") else None,
            request_id=request.request_id,
            focus_paths=tuple(request.focus_paths),
            focus_range=request.focus_range,
            git_url=request.git.url if which == "git" else "",
            git_ref=request.git.ref if which == "git" else "",
            zip_digest=codec.digest_from_pb(request.zip_digest, "zip_digest") if which == "zip_digest" else None,
            base_commit=request.base_commit,
        )
        if which == "git" and not request.git.url.strip():
            raise InvalidArgument("git.url is empty; give the repository's URL")
        record = await self._service.create(tenant, req)
        return pb.CreateTaskResponse(task=codec.task_to_pb(record, self._page_base))

    @_rpc
    async def GetTask(self, request: pb.GetTaskRequest, context: Ctx) -> pb.GetTaskResponse:
        record = await self._service.get(self._tenant(context), request.task_id)
        return pb.GetTaskResponse(task=codec.task_to_pb(record, self._page_base))

    @_rpc
    async def ListTasks(self, request: pb.ListTasksRequest, context: Ctx) -> pb.ListTasksResponse:
        states = [codec.state_from_pb(s) for s in request.states]
        records = await self._service.list(self._tenant(context), request.limit, states)
        return pb.ListTasksResponse(tasks=[codec.task_to_pb(r, self._page_base) for r in records])

    async def WatchTask(self, request: pb.WatchTaskRequest, context: Ctx) -> AsyncIterator[pb.WatchTaskResponse]:
        try:
            events = self._service.watch(self._tenant(context), request.task_id, request.after_seq)
            async for event in events:
                yield pb.WatchTaskResponse(event=codec.event_to_pb(event))
        except CodexError as exc:
            await context.abort(status_of(exc), str(exc))

    @_rpc
    async def CancelTask(self, request: pb.CancelTaskRequest, context: Ctx) -> pb.CancelTaskResponse:
        record = await self._service.cancel(self._tenant(context), request.task_id)
        return pb.CancelTaskResponse(task=codec.task_to_pb(record, self._page_base))

    async def GetArtifact(self, request: pb.GetArtifactRequest, context: Ctx) -> AsyncIterator[pb.GetArtifactResponse]:
        try:
            ref, chunks = await self._service.artifact(self._tenant(context), request.task_id, request.name)
            first = True
            async for data in chunks:
                # Re-chunk under the 4 MiB message limit whatever the store yields.
                for i in range(0, max(len(data), 1), ARTIFACT_CHUNK):
                    msg = pb.GetArtifactResponse(data=data[i:i + ARTIFACT_CHUNK])
                    if first:
                        msg.digest.CopyFrom(codec.digest_to_pb(ref.digest))
                        first = False
                    yield msg
            if first:
                yield pb.GetArtifactResponse(digest=codec.digest_to_pb(ref.digest))
        except CodexError as exc:
            await context.abort(status_of(exc), str(exc))


    @_rpc
    async def GetArtifactLink(self, request: pb.GetArtifactLinkRequest, context: Ctx) -> pb.GetArtifactLinkResponse:
        url, expires_at = await self._service.artifact_link(
            self._tenant(context), request.task_id, request.name, request.expires_in_seconds)
        return pb.GetArtifactLinkResponse(url=url, expires_at=expires_at)

    @_rpc
    async def GetTaskPageLink(self, request: pb.GetTaskPageLinkRequest, context: Ctx) -> pb.GetTaskPageLinkResponse:
        principal = self._principal(context)
        require(principal, Action.READ)
        if self._pages is None:
            raise FailedPrecondition("this runner serves no task pages: start it with --http-listen HOST:PORT "
                                     "(or CODEX_SYS_HTTP_LISTEN) to get page URLs and share links")
        url, expires_at = await self._pages.share(principal.tenant, request.task_id, request.expires_in_seconds)
        return pb.GetTaskPageLinkResponse(url=url, expires_at=expires_at)

    @_rpc
    async def CreatePullRequest(self, request: pb.CreatePullRequestRequest,
                                context: Ctx) -> pb.CreatePullRequestResponse:
        if self._pulls is None:
            raise FailedPrecondition("this runner cannot open pull requests")
        result = await self._pulls.create(self._tenant(context), PullRequestRequest(
            task_id=request.task_id, remote_url=request.remote_url, branch=request.branch,
            base_branch=request.base_branch, title=request.title, github_token=request.github_token,
            draft=request.draft))
        return pb.CreatePullRequestResponse(
            branch=result.branch, commit=result.commit, base_commit=result.base_commit, rebased=result.rebased,
            pull_request_url=result.pull_request_url, pull_request_number=result.pull_request_number)


def add_to_server(servicer: RunnerServicer, server: aio.Server) -> None:
    pb_grpc.add_RunnerServicer_to_server(servicer, server)


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Runner"].full_name
