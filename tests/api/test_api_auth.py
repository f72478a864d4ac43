"""Tokens on TCP, tenants kept apart, the unix socket private, health and reflection open."""

from __future__ import annotations

import os
import stat

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from runner.client.upload import upload_snapshot
from runner.domain import models as m
from runner.domain.errors import NotFound, Unauthenticated

from .conftest import TOKEN_A, TOKEN_B, Api

pytestmark = pytest.mark.timeout(30)


async def test_tcp_calls_need_a_valid_bearer_token(api: Api):
    for token in (None, "not-a-valid-token-at-all"):
        async with api.tenant(token) as client:
            with pytest.raises(Unauthenticated):
                await client.list_tasks()
            with pytest.raises(Unauthenticated):
                [e async for e in client.watch("t0123456789abcdef")]
    async with api.tenant(TOKEN_A) as client:
        assert await client.list_tasks() == []


async def test_a_tenant_sees_only_its_own_tasks_and_blobs(api: Api):
    data = b"tenant a's file"
    digest = m.Digest.of(data)
    manifest = m.Manifest((m.ManifestEntry("a.txt", m.FileKind.FILE, digest),))
    async with api.tenant(TOKEN_A) as a, api.tenant(TOKEN_B) as b:
        stats = await upload_snapshot(a, manifest, {digest: data})
        task = await a.create_task("work", manifest_digest=stats.manifest_digest)
        assert [t.id for t in await a.list_tasks()] == [task.id]
        assert await b.list_tasks() == []
        with pytest.raises(NotFound):
            await b.get_task(task.id)
        with pytest.raises(NotFound):
            await b.cancel(task.id)
        with pytest.raises(NotFound):
            [e async for e in b.watch(task.id)]
        # B cannot use A's blobs: they are missing for B, and a task over them is refused.
        assert await b.find_missing([digest]) == [digest]
        with pytest.raises(Exception, match="not been uploaded"):
            await b.create_task("steal", manifest_digest=stats.manifest_digest)


async def test_the_unix_socket_is_private_to_its_owner(api: Api):
    mode = stat.S_IMODE(os.stat(api.home.runner_socket).st_mode)
    assert mode == 0o600


async def test_health_and_reflection_answer_without_a_token(api: Api):
    async with grpc.aio.insecure_channel(api.tcp) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="codex.runner.v1.Runner"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        services = set()
        async for resp in stub.ServerReflectionInfo(ask()):
            services |= {s.name for s in resp.list_services_response.service}
        assert "codex.runner.v1.Runner" in services
