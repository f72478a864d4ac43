"""A typed async client of the Runner gRPC API, speaking domain dataclasses.

Addresses: `unix:/path/to/runner.sock` (the embedded runner), or `host:port` / `tls://host:port` (a
shared runner, with a bearer token; see `runner.client.channel`). RpcErrors come back as the runner's
own error classes with the server's message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runner._proto.codex.runner.v1 import runner_pb2 as pb
from runner._proto.codex.runner.v1 import runner_pb2_grpc as pb_grpc
from runner.api import codec
from runner.api.errors import error_from_rpc
from runner.client.channel import Target
from runner.closing import AsyncClosing
from runner.domain import models as m
from runner.pulls.models import PullRequestRequest, PullRequestResult


class RunnerClient(AsyncClosing):
    def __init__(self, address: str, token: str | None = None, timeout_s: float = 60.0, *,
                 ca_file: Path | None = None, plaintext: bool | None = None) -> None:
        """`address` as `runner.client.channel` reads it (unix:, host:port, tls://); `ca_file` and
        `plaintext` default to CODEX_SYS_CA_FILE and CODEX_SYS_PLAINTEXT."""
        self._target = Target.parse(address, token, ca_file, plaintext)
        self.address = self._target.address
        self._timeout = timeout_s
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = self._target.channel()
        self._stub = pb_grpc.RunnerStub(self._channel)

    async def reconnect(self) -> None:
        """A fresh channel (after the runner restarted): no waiting out the old one's backoff."""
        old = self._channel
        self._channel = self._target.channel()
        self._stub = pb_grpc.RunnerStub(self._channel)
        await old.close()

    async def close(self) -> None:
        await self._channel.close()

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until the channel connects; raises TimeoutError."""
        await asyncio.wait_for(self._channel.channel_ready(), timeout_s)

    async def _unary(self, method: Any, request: Any, bounded: bool = True) -> Any:
        """One unary call; an RpcError comes back as the runner's own error class."""
        try:
            return await method(request, metadata=self._metadata, timeout=self._timeout if bounded else None)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    async def find_missing(self, digests: Sequence[m.Digest]) -> list[m.Digest]:
        req = pb.FindMissingBlobsRequest(digests=[codec.digest_to_pb(d) for d in digests])
        resp = await self._unary(self._stub.FindMissingBlobs, req)
        return [codec.digest_from_pb(d) for d in resp.missing]

    async def upload(self, requests: AsyncIterator[pb.UploadBlobsRequest]) -> tuple[int, int]:
        resp = await self._unary(self._stub.UploadBlobs, requests, bounded=False)  # as long as the data takes
        return resp.blobs_stored, resp.bytes_stored

    async def create_task(self, instruction: str, *, manifest_digest: m.Digest | None = None, model: str = "",
                          request_id: str = "", limits: m.TaskLimits | None = None,
                          focus_paths: Sequence[str] = (), focus_range: str = "", git_url: str = "",
                          git_ref: str = "", zip_digest: m.Digest | None = None,
                          base_commit: str = "") -> m.TaskRecord:
        """Create a task from exactly one source: a snapshot's manifest digest, a Git URL (and ref), or an
        uploaded zip archive's digest."""
        req = pb.CreateTaskRequest(instruction=instruction, model=model, request_id=request_id,
                                   focus_paths=list(focus_paths), focus_range=focus_range, base_commit=base_commit)
        if manifest_digest is not None:
            req.manifest_digest.CopyFrom(codec.digest_to_pb(manifest_digest))
        elif git_url:
            req.git.CopyFrom(pb.GitSource(url=git_url, ref=git_ref))
        elif zip_digest is not None:
            req.zip_digest.CopyFrom(codec.digest_to_pb(zip_digest))
        if limits is not None:
            req.limits.CopyFrom(pb.TaskLimits(
                wall_time_seconds=limits.wall_time_s, max_steps=limits.max_steps,
                max_llm_requests=limits.max_llm_requests, max_llm_tokens=limits.max_llm_tokens,
                command_timeout_seconds=limits.command_timeout_s))
        resp = await self._unary(self._stub.CreateTask, req)
        return task_from_pb(resp.task)

    async def get_task(self, task_id: str) -> m.TaskRecord:
        resp = await self._unary(self._stub.GetTask, pb.GetTaskRequest(task_id=task_id))
        return task_from_pb(resp.task)

    async def list_tasks(self, limit: int = 50, states: Sequence[m.TaskState] = ()) -> list[m.TaskRecord]:
        req = pb.ListTasksRequest(limit=limit, states=[codec.state_to_pb(s) for s in states])
        resp = await self._unary(self._stub.ListTasks, req)
        return [task_from_pb(t) for t in resp.tasks]

    async def watch(self, task_id: str, after_seq: int = 0) -> AsyncIterator[m.Event]:
        call = self._stub.WatchTask(pb.WatchTaskRequest(task_id=task_id, after_seq=after_seq),
                                    metadata=self._metadata)
        try:
            async for resp in call:
                yield codec.event_from_pb(resp.event)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            call.cancel()

    async def cancel(self, task_id: str) -> m.TaskRecord:
        resp = await self._unary(self._stub.CancelTask, pb.CancelTaskRequest(task_id=task_id))
        return task_from_pb(resp.task)

    async def artifact(self, task_id: str, name: str) -> AsyncIterator[bytes]:
        call = self._stub.GetArtifact(pb.GetArtifactRequest(task_id=task_id, name=name), metadata=self._metadata)
        try:
            async for resp in call:
                if resp.data:
                    yield resp.data
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            call.cancel()

    async def artifact_link(self, task_id: str, name: str, expires_s: int = 0) -> tuple[str, float]:
        """(url, expires_at) of a link that downloads the artifact without a token."""
        req = pb.GetArtifactLinkRequest(task_id=task_id, name=name, expires_in_seconds=expires_s)
        resp = await self._unary(self._stub.GetArtifactLink, req)
        return resp.url, resp.expires_at

    async def task_page(self, task_id: str) -> tuple[m.TaskRecord, str]:
        """The task and its page URL ("" when the runner serves no task pages)."""
        resp = await self._unary(self._stub.GetTask, pb.GetTaskRequest(task_id=task_id))
        return task_from_pb(resp.task), resp.task.page_url

    async def page_link(self, task_id: str, expires_s: int = 0) -> tuple[str, float]:
        """(url, expires_at) of a share link that opens the task's page read-only without a token."""
        req = pb.GetTaskPageLinkRequest(task_id=task_id, expires_in_seconds=expires_s)
        resp = await self._unary(self._stub.GetTaskPageLink, req)
        return resp.url, resp.expires_at

    async def artifact_bytes(self, task_id: str, name: str) -> bytes:
        return b"".join([chunk async for chunk in self.artifact(task_id, name)])

    async def create_pull_request(self, req: PullRequestRequest) -> PullRequestResult:
        """Push the task's diff as a branch (and open a GitHub pull request); git and GitHub may take a
        while, so the call is not bounded by the client's usual timeout."""
        resp = await self._unary(self._stub.CreatePullRequest, pb.CreatePullRequestRequest(
            task_id=req.task_id, remote_url=req.remote_url, branch=req.branch, base_branch=req.base_branch,
            title=req.title, github_token=req.github_token, draft=req.draft), bounded=False)
        return PullRequestResult(branch=resp.branch, commit=resp.commit, base_commit=resp.base_commit,
                                 rebased=resp.rebased, pull_request_url=resp.pull_request_url,
                                 pull_request_number=resp.pull_request_number)


def task_from_pb(t: pb.Task) -> m.TaskRecord:
    return m.TaskRecord(
        id=t.id, tenant="", instruction=t.instruction, model=t.model,
        manifest_digest=codec.digest_from_pb(t.manifest_digest) if t.HasField("manifest_digest") else None,
        state=codec.state_from_pb(t.state), reason=t.reason, created_at=t.created_at, updated_at=t.updated_at,
        attempt=t.attempt, artifacts=tuple(m.ArtifactRef(a.name, codec.digest_from_pb(a.digest)) for a in t.artifacts),
        usage=codec.usage_from_pb(t.usage), files_changed=t.files_changed, source=codec.source_from_pb(t.source))



async def is_serving(address: str, timeout_s: float = 1.0) -> bool:
    """Whether a runner answers SERVING to the standard gRPC health check at `address`."""
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError:
            return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
