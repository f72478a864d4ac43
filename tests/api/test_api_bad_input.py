"""Bad input over the real gRPC API gets a clear error with the right status, and nothing stored is
lost or corrupted."""

from __future__ import annotations

import grpc
import pytest

from runner._proto.codex.runner.v1 import runner_pb2 as pb
from runner._proto.codex.runner.v1 import runner_pb2_grpc as pb_grpc
from runner.api import codec
from runner.client.upload import upload_snapshot
from runner.domain import models as m
from runner.domain.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

from .conftest import MAX_BLOB, Api

pytestmark = pytest.mark.timeout(30)


def entry(path: str, data: bytes, kind: m.FileKind = m.FileKind.FILE) -> tuple[m.ManifestEntry, bytes]:
    return m.ManifestEntry(path, kind, m.Digest.of(data)), data


async def submit(api: Api, *files: tuple[m.ManifestEntry, bytes], instruction: str = "do it") -> m.TaskRecord:
    manifest = m.Manifest(tuple(e for e, _ in files))
    async with api.unix() as client:
        stats = await upload_snapshot(client, manifest, {e.digest: d for e, d in files})
        return await client.create_task(instruction, manifest_digest=stats.manifest_digest)


@pytest.mark.parametrize(("path", "words"), [
    ("/etc/passwd", "absolute"),
    ("../outside.txt", "'..'"),
    ("a/../../b", "'..'"),
    ("a//b", "not canonical"),
    ("./a", "not canonical"),
    ("a\\b", "backslash"),
])
async def test_a_manifest_with_a_path_out_of_the_workspace_is_refused(api: Api, path: str, words: str):
    with pytest.raises(InvalidArgument, match="manifest path") as err:
        await submit(api, entry(path, b"x"))
    assert words in str(err.value)


async def test_duplicate_paths_and_file_folder_clashes_are_refused(api: Api):
    with pytest.raises(InvalidArgument, match="appears twice"):
        await submit(api, entry("a.txt", b"1"), entry("a.txt", b"2"))
    with pytest.raises(InvalidArgument, match="both a file and a folder"):
        await submit(api, entry("a", b"1"), entry("a/b", b"2"))


@pytest.mark.parametrize("target", [b"/etc/passwd", b"../../etc", b"sub/../../../x"])
async def test_a_symlink_pointing_out_of_the_workspace_is_refused(api: Api, target: bytes):
    with pytest.raises(InvalidArgument, match="outside the workspace"):
        await submit(api, entry("sub/link", target, m.FileKind.SYMLINK))


async def test_a_chain_of_symlinks_that_climbs_out_is_refused(api: Api):
    # Each target looks harmless as a string; followed like the kernel does, `up/../x` leaves the root.
    with pytest.raises(InvalidArgument, match="outside the workspace"):
        await submit(api, entry("sub/up", b"..", m.FileKind.SYMLINK),
                     entry("sub/escape", b"up/../x", m.FileKind.SYMLINK))
    with pytest.raises(InvalidArgument, match="more than 40 links"):
        await submit(api, entry("a", b"b", m.FileKind.SYMLINK), entry("b", b"a", m.FileKind.SYMLINK))


async def test_a_symlink_inside_the_workspace_is_accepted(api: Api):
    task = await submit(api, entry("sub/link", b"../a.txt", m.FileKind.SYMLINK), entry("a.txt", b"hello"))
    assert task.state is m.TaskState.QUEUED


async def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused_and_the_stored_copy_survives(api: Api):
    good = b"the real content\n"
    digest = m.Digest.of(good)
    async with api.unix() as client:
        await upload_snapshot(client, m.Manifest((m.ManifestEntry("f.txt", m.FileKind.FILE, digest),)),
                              {digest: good})
        assert await client.find_missing([digest]) == []

        async def lying():
            yield pb.UploadBlobsRequest(chunks=[pb.BlobChunk(digest=codec.digest_to_pb(digest), offset=0,
                                                             data=b"forged content!!!", last=True)])

        with pytest.raises(InvalidArgument, match=digest.hash):
            await client.upload(lying())
        other = m.Digest.of(b"never stored")

        async def lying_new():
            yield pb.UploadBlobsRequest(chunks=[pb.BlobChunk(digest=codec.digest_to_pb(other), offset=0,
                                                             data=b"something else", last=True)])

        with pytest.raises(InvalidArgument):
            await client.upload(lying_new())
        assert await client.find_missing([digest, other]) == [other]
    # The stored blob still has its own bytes: a task created from it reads them back intact.
    assert await api.runner.service.blobs.get_bytes("local", digest) == good  # type: ignore[union-attr]


async def test_a_blob_over_the_size_limit_is_refused(api: Api):
    big = b"x" * (MAX_BLOB + 1)
    with pytest.raises(ResourceExhausted):
        await submit(api, entry("big.bin", big))


async def test_a_snapshot_over_the_file_limit_is_refused_with_the_numbers(api: Api):
    files = [entry(f"f{i}.txt", str(i).encode()) for i in range(51)]
    with pytest.raises(InvalidArgument, match="51 files; the limit is 50"):
        await submit(api, *files)


async def test_a_task_whose_blobs_were_never_uploaded_is_refused(api: Api):
    e, _ = entry("a.txt", b"not uploaded")
    manifest_bytes = codec.manifest_to_bytes(m.Manifest((e,)))
    async with api.unix() as client:
        digest = m.Digest.of(manifest_bytes)

        async def only_manifest():
            yield pb.UploadBlobsRequest(chunks=[pb.BlobChunk(digest=codec.digest_to_pb(digest), offset=0,
                                                             data=manifest_bytes, last=True)])

        await client.upload(only_manifest())
        with pytest.raises(FailedPrecondition, match=r"not uploaded.*'a.txt'"):
            await client.create_task("x", manifest_digest=digest)
        with pytest.raises(FailedPrecondition, match="has not been uploaded"):
            await client.create_task("x", manifest_digest=m.Digest.of(b"no such manifest"))


async def test_an_empty_instruction_is_refused(api: Api):
    with pytest.raises(InvalidArgument, match="instruction is empty"):
        await submit(api, entry("a.txt", b"a"), instruction="   \n")


async def test_unknown_and_malformed_task_ids(api: Api):
    async with api.unix() as client:
        with pytest.raises(NotFound, match="no task t0123456789abcdef"):
            await client.get_task("t0123456789abcdef")
        with pytest.raises(InvalidArgument, match="not a task id"):
            await client.get_task("../../etc/passwd")
        with pytest.raises(NotFound):
            await client.cancel("t0123456789abcdef")
        with pytest.raises(NotFound):
            [e async for e in client.watch("t0123456789abcdef")]


async def test_cancel_of_a_finished_task_is_refused(api: Api):
    task = await submit(api, entry("a.txt", b"a"))
    async with api.unix() as client:
        cancelled = await client.cancel(task.id)
        assert cancelled.state is m.TaskState.CANCELLED
        with pytest.raises(FailedPrecondition, match="already ended"):
            await client.cancel(task.id)
        events = [e async for e in client.watch(task.id)]
    assert [type(e.payload) for e in events] == [m.StateChanged, m.StateChanged, m.TaskResult]
    assert events[-1].payload == m.TaskResult(m.TaskState.CANCELLED, "cancelled by the user", 0, ())


async def test_an_unknown_artifact_name_is_refused(api: Api):
    task = await submit(api, entry("a.txt", b"a"))
    async with api.unix() as client:
        with pytest.raises(InvalidArgument, match="not an artifact name"):
            await client.artifact_bytes(task.id, "../../state.db")
        with pytest.raises(FailedPrecondition, match="artifacts exist once it ends"):
            await client.artifact_bytes(task.id, "diff.patch")


async def test_the_status_codes_are_the_grpc_ones(api: Api):
    channel = grpc.aio.insecure_channel(f"unix:{api.home.runner_socket}")
    stub = pb_grpc.RunnerStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetTask(pb.GetTaskRequest(task_id="t0123456789abcdef"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateTask(pb.CreateTaskRequest(instruction="x"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no source" in (err.value.details() or "")
    await channel.close()
