"""The `codex.runner.v1.Runner` servicer: thin handlers that translate and call `TaskService`.

Errors are the runner's own classes, mapped onto gRPC status codes in one place (`_rpc`), with the
message a person reads. Uploads stream straight into the BlobStore: each blob is verified against its
digest before it becomes visible, so a failed or lying upload never corrupts what is stored.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

from grpc import aio

from runner._proto.codex.runner.v1 import runner_pb2 as pb
from runner._proto.codex.runner.v1 import runner_pb2_grpc as pb_grpc
from runner.api import codec
from runner.api.auth import Authenticator
from runner.api.errors import status_of
from runner.domain import models as m
from runner.domain.errors import CodexError, InvalidArgument
from runner.ports import BlobWriter
from runner.tasks.service import TaskRequest, TaskService

log = logging.getLogger(__name__)

# grpc ships no type information; its context is Any to the type checker.
Ctx: TypeAlias = Any
R = TypeVar("R")
ARTIFACT_CHUNK = 1 << 20
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


class RunnerServicer(pb_grpc.RunnerServicer):
    def __init__(self, service: TaskService, auth: Authenticator) -> None:
        self._service = service
        self._auth = auth

    def _tenant(self, context: Ctx) -> str:
        return self._auth.tenant_of(context)

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
        writer: BlobWriter | None = None
        current: m.Digest | None = None
        expected_offset = 0
        stored = 0
        stored_bytes = 0
        try:
            tenant = self._tenant(context)
            blobs = self._service.blobs
            async for message in request_iterator:
                for chunk in message.chunks:
                    digest = codec.digest_from_pb(chunk.digest, "chunk digest")
                    if current is None or digest != current:
                        if writer is not None:
                            raise InvalidArgument(f"blob {current} ended without a chunk marked last")
                        if chunk.offset != 0:
                            raise InvalidArgument(f"blob {digest} starts at offset {chunk.offset}, not 0")
                        writer = await blobs.writer(tenant, digest)
                        current, expected_offset = digest, 0
                    elif chunk.offset != expected_offset:
                        raise InvalidArgument(f"blob {digest}: chunk at offset {chunk.offset}, expected "
                                              f"{expected_offset}")
                    assert writer is not None
                    if chunk.data:
                        await writer.write(chunk.data)
                    expected_offset += len(chunk.data)
                    if chunk.last:
                        await writer.commit()
                        writer, current = None, None
                        stored += 1
                        stored_bytes += digest.size
            if writer is not None:
                raise InvalidArgument(f"the stream ended in the middle of blob {current}")
        except CodexError as exc:
            if writer is not None:
                await writer.abort()
            await context.abort(status_of(exc), str(exc))
        finally:
            if writer is not None:
                await writer.abort()
        return pb.UploadBlobsResponse(blobs_stored=stored, bytes_stored=stored_bytes)

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
        )
        record = await self._service.create(tenant, req)
        return pb.CreateTaskResponse(task=codec.task_to_pb(record))

    @_rpc
    async def GetTask(self, request: pb.GetTaskRequest, context: Ctx) -> pb.GetTaskResponse:
        record = await self._service.get(self._tenant(context), request.task_id)
        return pb.GetTaskResponse(task=codec.task_to_pb(record))

    @_rpc
    async def ListTasks(self, request: pb.ListTasksRequest, context: Ctx) -> pb.ListTasksResponse:
        states = [codec.state_from_pb(s) for s in request.states]
        records = await self._service.list(self._tenant(context), request.limit, states)
        return pb.ListTasksResponse(tasks=[codec.task_to_pb(r) for r in records])

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
        return pb.CancelTaskResponse(task=codec.task_to_pb(record))

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


def add_to_server(servicer: RunnerServicer, server: aio.Server) -> None:
    pb_grpc.add_RunnerServicer_to_server(servicer, server)


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Runner"].full_name
