"""Per-tenant quotas against a real runner: each refusal with its RESOURCE_EXHAUSTED message, the LLM
token clamp, concurrent creates that cannot overshoot, the tenants file's errors and its reload."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from runner.client.connection import RunnerClient
from runner.client.upload import upload_snapshot
from runner.domain import models as m
from runner.domain.errors import InvalidArgument, ResourceExhausted
from runner.tasks.quotas import parse_tenants

from .conftest import config, running

pytestmark = pytest.mark.timeout(30)

TOKENS = {"conc": "quota-concurrent-0123456789", "hour": "quota-hourly-0123456789",
          "llm": "quota-llm-tokens-0123456789", "free": "quota-unlimited-0123456789"}
TENANTS = """
[defaults]
concurrent_tasks = 0

[tenants.conc]
concurrent_tasks = 2

[tenants.hour]
tasks_per_hour = 3

[tenants.llm]
llm_tokens_per_day = 1500
"""


async def snapshot(client: RunnerClient) -> m.Digest:
    data = b"print('hi')\n"
    blob = m.Digest.of(data)
    stats = await upload_snapshot(client, m.Manifest((m.ManifestEntry("a.py", m.FileKind.FILE, blob),)), {blob: data})
    return stats.manifest_digest


@contextlib.asynccontextmanager
async def one_tenant(root: Path, tenant: str, tenants_toml: str) -> AsyncIterator[tuple[RunnerClient, m.Digest]]:
    """A runner with these quotas, a client of `tenant` and a snapshot of its own."""
    (root / "tenants.toml").write_text(tenants_toml)
    cfg = config(root, tokens=f"{TOKENS[tenant]} {tenant}\n", tenants_file=root / "tenants.toml")
    async with running(cfg) as (_, address), RunnerClient(address, token=TOKENS[tenant]) as client:
        yield client, await snapshot(client)


def limits(tokens: int) -> m.TaskLimits:
    return m.TaskLimits(wall_time_s=0, max_steps=0, max_llm_requests=0, max_llm_tokens=tokens, command_timeout_s=0)


async def test_each_quota_refuses_with_its_message_and_the_budget_is_clamped(short_tmp: Path) -> None:
    tenants = short_tmp / "tenants.toml"
    tenants.write_text(TENANTS)
    cfg = config(short_tmp, tokens="".join(f"{t} {n}\n" for n, t in TOKENS.items()), tenants_file=tenants)
    async with running(cfg) as (runner, address):
        assert runner.service is not None
        store = runner.service.store
        clients = {name: RunnerClient(address, token=token) for name, token in TOKENS.items()}
        try:
            conc = clients["conc"]
            digest = await snapshot(conc)
            first = await conc.create_task("one", manifest_digest=digest)
            second = await conc.create_task("two", manifest_digest=digest, request_id="retry-1")
            with pytest.raises(ResourceExhausted) as caught:
                await conc.create_task("three", manifest_digest=digest)
            assert str(caught.value) == ("tenant conc has 2 tasks queued or running; its limit is 2 — wait for one "
                                         "to end or cancel one")
            # A retried create (same request id) is answered, not refused; a cancel frees a slot.
            assert (await conc.create_task("two", manifest_digest=digest, request_id="retry-1")).id == second.id
            await conc.cancel(first.id)
            await conc.create_task("three", manifest_digest=digest)

            hour = clients["hour"]
            digest = await snapshot(hour)
            for n in range(3):
                await hour.create_task(f"task {n}", manifest_digest=digest)
            with pytest.raises(ResourceExhausted, match=r"^tenant hour created 3 tasks in the last hour \(limit 3\); "
                                                        r"the next one may start in (59|60) min$"):
                await hour.create_task("one more", manifest_digest=digest)

            llm = clients["llm"]
            digest = await snapshot(llm)
            small = await llm.create_task("small", manifest_digest=digest, limits=limits(1000))
            assert (await store.get(small.id)).limits.max_llm_tokens == 1000
            clamped = await llm.create_task("big", manifest_digest=digest)  # the default budget is 2,000,000
            assert (await store.get(clamped.id)).limits.max_llm_tokens == 500
            with pytest.raises(ResourceExhausted) as caught:
                await llm.create_task("more", manifest_digest=digest)
            assert str(caught.value).startswith(
                "tenant llm used 1,500 LLM tokens in the last 24 h (limit 1,500; 2 task(s) not yet ended hold their "
                "whole budget); more are available in 24.0 h, or as soon as a task ends under budget")

            free = clients["free"]
            digest = await snapshot(free)
            for n in range(4):
                await free.create_task(f"task {n}", manifest_digest=digest)
        finally:
            for client in clients.values():
                await client.close()


async def test_concurrent_creates_of_one_tenant_do_not_overshoot_and_retries_are_not_refused(short_tmp: Path) -> None:
    async with one_tenant(short_tmp, "conc", "[defaults]\nconcurrent_tasks = 3\n") as (client, digest):
        tenants = short_tmp / "tenants.toml"
        results = await asyncio.gather(*(client.create_task(f"t{n}", manifest_digest=digest, request_id=f"r{n}")
                                         for n in range(10)), return_exceptions=True)
        made = [r for r in results if isinstance(r, m.TaskRecord)]
        refused = [r for r in results if isinstance(r, ResourceExhausted)]
        assert (len(made), len(refused)) == (3, 7)
        # The same request again is the same task, not a fourth one, even at the limit.
        first_made = next(n for n, r in enumerate(results) if isinstance(r, m.TaskRecord))
        retry = await client.create_task("again", manifest_digest=digest, request_id=f"r{first_made}")
        assert retry.id in {t.id for t in made}
        assert len(await client.list_tasks()) == 3
        # The file is re-read when it changes: one more slot.
        tenants.write_text("[defaults]\nconcurrent_tasks = 4\n")
        deadline = time.monotonic() + 5
        while True:
            try:
                await client.create_task("fourth", manifest_digest=digest)
                break
            except ResourceExhausted:
                assert time.monotonic() < deadline, "the tenants file was not reloaded"
                await asyncio.sleep(0.2)


@pytest.mark.parametrize(("text", "message"), [
    ("[defaults\n", "not valid TOML"),
    ("[limits]\n", "unknown table(s) limits"),
    ("[defaults]\nconcurrent = 1\n", "[defaults]: unknown key 'concurrent'"),
    ("[defaults]\ntasks_per_hour = -1\n", "tasks_per_hour must be a whole number >= 0"),
    ("[tenants.acme]\nllm_tokens_per_day = '1M'\n", "[tenants.acme]: llm_tokens_per_day must be a whole number"),
    ("[tenants.Acme]\n", "[tenants.Acme] is not a tenant name"),
])
def test_tenants_file_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_tenants(text, "tenants.toml")
    assert str(caught.value).startswith("tenants.toml: ") and message in str(caught.value)


def test_a_tenant_table_falls_back_to_the_defaults_key_by_key() -> None:
    settings = parse_tenants("[defaults]\nconcurrent_tasks = 4\ntasks_per_hour = 60\n"
                             "[tenants.acme]\ntasks_per_hour = 0\n", "t")
    assert (settings.limits("acme").concurrent_tasks, settings.limits("acme").tasks_per_hour) == (4, 0)
    assert settings.limits("other").tasks_per_hour == 60


async def test_a_quota_refusal_is_resource_exhausted_on_the_wire(short_tmp: Path) -> None:
    async with one_tenant(short_tmp, "hour", "[defaults]\ntasks_per_hour = 1\n") as (client, digest):
        await client.create_task("one", manifest_digest=digest)
        with pytest.raises(ResourceExhausted) as caught:
            await client.create_task("two", manifest_digest=digest)
        rpc_error = caught.value.__cause__
        assert isinstance(rpc_error, grpc.aio.AioRpcError)
        assert rpc_error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
