"""Every Runner RPC (walked from the service descriptor) by every kind of caller, against a real runner.

Callers: tenant A's member and viewer, tenant B's member, and five that are not let in (no token,
malformed, unknown, expired, revoked). A's own calls get past authorization (whatever the handler then
says), a viewer is refused what is not a read, B gets NOT_FOUND for each of A's task ids, never A's
tasks in a list, never A's blobs, and the ones not let in get UNAUTHENTICATED before any handler runs.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor import MethodDescriptor

from runner._proto.codex.runner.v1 import runner_pb2 as pb
from runner.api import codec
from runner.api.auth import METHOD_ACTIONS, SERVICE
from runner.auth.principal import Action
from runner.client.connection import RunnerClient
from runner.client.upload import upload_snapshot
from runner.config import HomeLayout
from runner.domain import models as m
from runner.web.server import WebConfig

from .conftest import (
    TOKEN_A,
    TOKEN_A_VIEWER,
    TOKEN_B,
    TOKEN_EXPIRED,
    TOKEN_REVOKED,
    TOKEN_UNKNOWN,
    config,
    running,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

METHODS: list[MethodDescriptor] = list(pb.DESCRIPTOR.services_by_name["Runner"].methods)
CALLERS = {
    "a-member": f"Bearer {TOKEN_A}", "a-viewer": f"Bearer {TOKEN_A_VIEWER}", "b-member": f"Bearer {TOKEN_B}",
    "no-token": None, "malformed": f"Basic {TOKEN_A}", "unknown": f"Bearer {TOKEN_UNKNOWN}",
    "expired": f"Bearer {TOKEN_EXPIRED}", "revoked": f"Bearer {TOKEN_REVOKED}",
}
NOT_LET_IN = {"no-token", "malformed", "unknown", "expired", "revoked"}
REFUSALS = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}
DATA = b"tenant a's file\n"


@dataclass
class World:
    address: str
    home: HomeLayout
    task: m.TaskRecord  # A's, queued
    doomed: m.TaskRecord  # A's, for A's own cancel
    manifest_digest: m.Digest
    blob: m.Digest


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world() -> AsyncIterator[World]:
    root = Path(tempfile.mkdtemp(prefix="cxauth", dir="/tmp"))
    cfg = config(root, http=WebConfig(listen=("127.0.0.1", 0)))
    async with running(cfg) as (_, address), RunnerClient(address, token=TOKEN_A) as a:
        blob = m.Digest.of(DATA)
        manifest = m.Manifest((m.ManifestEntry("a.txt", m.FileKind.FILE, blob),))
        stats = await upload_snapshot(a, manifest, {blob: DATA})
        task = await a.create_task("work", manifest_digest=stats.manifest_digest)
        doomed = await a.create_task("more work", manifest_digest=stats.manifest_digest)
        yield World(address, cfg.home, task, doomed, stats.manifest_digest, blob)


def request_for(method: MethodDescriptor, w: World, caller: str) -> Any:
    """The method's request about A's things (A's own cancel goes to a task kept for it)."""
    msg = getattr(pb, method.input_type.name)()
    fields = msg.DESCRIPTOR.fields_by_name
    if "task_id" in fields:
        msg.task_id = w.doomed.id if method.name == "CancelTask" and caller.startswith("a-") else w.task.id
    if "name" in fields:
        msg.name = "diff.patch"
    if method.name == "FindMissingBlobs":
        msg.digests.append(codec.digest_to_pb(w.blob))
    if method.name == "UploadBlobs":
        other = b"b's own blob\n"
        msg.chunks.append(pb.BlobChunk(digest=codec.digest_to_pb(m.Digest.of(other)), offset=0, data=other,
                                       last=True))
    if method.name == "CreateTask":
        msg.instruction = "use A's snapshot"
        msg.manifest_digest.CopyFrom(codec.digest_to_pb(w.manifest_digest))
    if method.name == "CreatePullRequest":
        msg.remote_url, msg.branch = "https://example.com/a/repo.git", "codex/x"
    return msg


async def call(channel: grpc.aio.Channel, method: MethodDescriptor, request: Any,
               header: str | None) -> tuple[grpc.StatusCode, str, list[Any]]:
    """(code, details, responses) of one call; a stream that stays open after its first message is OK."""
    path = f"/{SERVICE}/{method.name}"
    reply = getattr(pb, method.output_type.name)
    kw = {"request_serializer": type(request).SerializeToString, "response_deserializer": reply.FromString}
    metadata = (("authorization", header),) if header is not None else ()
    try:
        if method.client_streaming:
            async def requests() -> AsyncIterator[Any]:
                yield request
            return grpc.StatusCode.OK, "", [await channel.stream_unary(path, **kw)(
                requests(), metadata=metadata, timeout=10)]
        if method.server_streaming:
            stream = channel.unary_stream(path, **kw)(request, metadata=metadata, timeout=10)
            try:
                first = await asyncio.wait_for(stream.read(), 2)
            except TimeoutError:
                return grpc.StatusCode.OK, "", []
            finally:
                stream.cancel()
            return grpc.StatusCode.OK, "", [] if first is grpc.aio.EOF else [first]
        return grpc.StatusCode.OK, "", [await channel.unary_unary(path, **kw)(request, metadata=metadata, timeout=10)]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", []


async def test_every_rpc_of_the_service_has_an_access_rule() -> None:
    # A new RPC without an entry fails here (and is refused by the interceptor meanwhile).
    assert {md.name for md in METHODS} == set(METHOD_ACTIONS)


@pytest.mark.parametrize("caller", sorted(CALLERS))
async def test_each_rpc_for_each_caller(world: World, caller: str) -> None:
    header = CALLERS[caller]
    outcomes = {}
    async with grpc.aio.insecure_channel(world.address) as channel:
        for method in METHODS:
            outcomes[method.name] = await call(channel, method, request_for(method, world, caller), header)
    for name, (code, details, replies) in outcomes.items():
        action = METHOD_ACTIONS[name]
        where = f"{caller} {name}: {code.name} {details}"
        if caller in NOT_LET_IN:
            assert code is grpc.StatusCode.UNAUTHENTICATED, where
            for token in (TOKEN_A, TOKEN_EXPIRED, TOKEN_REVOKED, TOKEN_UNKNOWN):
                assert token not in details, where
        elif caller == "a-viewer" and action is not Action.READ:
            assert code is grpc.StatusCode.PERMISSION_DENIED, where
            assert "may not" in details and "a member token is needed" in details, where
        elif caller.startswith("a-"):
            assert code not in REFUSALS, where
        elif name == "ListTasks":
            assert code is grpc.StatusCode.OK and list(replies[0].tasks) == [], where
        elif name == "FindMissingBlobs":
            assert [codec.digest_from_pb(d) for d in replies[0].missing] == [world.blob], where
        elif name == "CreateTask":
            assert code is grpc.StatusCode.FAILED_PRECONDITION and "not been uploaded" in details, where
        elif name == "UploadBlobs":
            assert code is grpc.StatusCode.OK, where  # into B's own store
        else:
            assert code is grpc.StatusCode.NOT_FOUND and details == f"no task {world.task.id}", where
    if caller == "a-member":
        # Its own tasks, and the one its CreateTask just made from its snapshot.
        assert {world.doomed.id, world.task.id} < {t.id for t in outcomes["ListTasks"][2][0].tasks}
        assert outcomes["GetTask"][2][0].task.id == world.task.id
        assert codec.state_from_pb(outcomes["CancelTask"][2][0].task.state) is m.TaskState.CANCELLED
    async with RunnerClient(world.address, token=TOKEN_A) as a:
        # Whatever B tried, A's task is untouched.
        assert (await a.get_task(world.task.id)).state is m.TaskState.QUEUED


async def test_the_unix_socket_is_the_local_tenant_with_the_member_role(world: World) -> None:
    async with RunnerClient(f"unix:{world.home.runner_socket}") as local:
        assert await local.list_tasks() == []
        assert await local.find_missing([world.blob]) == [world.blob]
        blob = m.Digest.of(DATA)
        manifest = m.Manifest((m.ManifestEntry("a.txt", m.FileKind.FILE, blob),))
        stats = await upload_snapshot(local, manifest, {blob: DATA})
        mine = await local.create_task("local work", manifest_digest=stats.manifest_digest)
        assert (await local.cancel(mine.id)).state is m.TaskState.CANCELLED
    async with RunnerClient(world.address, token=TOKEN_A) as a:
        assert mine.id not in {t.id for t in await a.list_tasks()}
