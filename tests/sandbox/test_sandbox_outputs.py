"""Collecting /output and agent.log: only the contract's names, only regular files, within size limits."""

from __future__ import annotations

import textwrap

import pytest
from sandbox_testing import TENANT, MakeExecutor, make_job

from runner.adapters.embedded.fs_blob_store import FsBlobStore
from runner.adapters.local_executor import OutputLimits
from runner.config import HomeLayout
from runner.domain.models import ArtifactRef, Digest

pytestmark = pytest.mark.timeout(30)


async def _contents(blobs: FsBlobStore, artifacts: tuple[ArtifactRef, ...]) -> dict[str, bytes]:
    return {ref.name: await blobs.get_bytes(TENANT, ref.digest) for ref in artifacts}


async def test_outputs_are_collected_into_the_blob_store(make_executor: MakeExecutor, blobs: FsBlobStore) -> None:
    executor = await make_executor()
    outcome = await executor.run(make_job(textwrap.dedent("""
        files = {"diff.patch": "--- a/x\\n+++ b/x\\n", "prompt.txt": "the prompt", "setup.log": "set up",
                 "summary.md": "# Done"}
        for name, text in files.items():
            open("/output/" + name, "w").write(text)
        open("/output/result.json", "w").write('{"status":"completed","reason":"","files_changed":1,"steps":2}')
        open("/output/notes.txt", "w").write("not an output")
        os.mkdir("/output/extra")
        print("hello from the agent", flush=True)
        print("and from its stderr", file=sys.stderr, flush=True)
    """)))
    assert outcome.exit_code == 0
    assert not outcome.timed_out
    contents = await _contents(blobs, outcome.artifacts)
    assert sorted(contents) == ["agent.log", "diff.patch", "prompt.txt", "setup.log", "summary.md"]
    assert contents["diff.patch"] == b"--- a/x\n+++ b/x\n"
    assert contents["summary.md"] == b"# Done"
    assert contents["agent.log"] == b"hello from the agent\nand from its stderr\n"
    assert outcome.result_json == b'{"status":"completed","reason":"","files_changed":1,"steps":2}'
    assert outcome.detail == ("the agent exited with code 0; ignored unexpected /output entries 'extra', "
                              "'notes.txt'")


async def test_symlinks_in_output_are_refused_not_followed(make_executor: MakeExecutor, blobs: FsBlobStore,
                                                           home: HomeLayout) -> None:
    # Inside the sandbox the host path means nothing, but a collector that followed the link on the host
    # would read the host file.
    secret = home.root / "host-secret.txt"
    secret.write_bytes(b"host secret 7d1e")
    executor = await make_executor()
    outcome = await executor.run(make_job(textwrap.dedent(f"""
        os.symlink({str(secret)!r}, "/output/diff.patch")
        os.symlink("/etc/passwd", "/output/summary.md")
        open("/output/prompt.txt", "w").write("fine")
    """)))
    names = [a.name for a in outcome.artifacts]
    assert names == ["prompt.txt", "agent.log"]
    assert "refused /output/diff.patch: it is a symlink; only regular files are collected" in outcome.detail
    assert "refused /output/summary.md: it is a symlink" in outcome.detail
    assert await blobs.find_missing(TENANT, [Digest.of(b"host secret 7d1e")]) == [Digest.of(b"host secret 7d1e")]


async def test_oversized_outputs_are_refused_with_a_note(make_executor: MakeExecutor) -> None:
    executor = await make_executor(output_limits=OutputLimits(max_output_bytes=1000, max_result_bytes=100))
    outcome = await executor.run(make_job(textwrap.dedent("""
        open("/output/summary.md", "w").write("s" * 5000)
        open("/output/diff.patch", "w").write("d" * 1000)
        open("/output/result.json", "w").write('{"status": "completed", "reason": "' + "r" * 200 + '"}')
    """)))
    assert [a.name for a in outcome.artifacts] == ["diff.patch", "agent.log"]
    assert "refused /output/summary.md: 5000 bytes is over the limit of 1000 bytes" in outcome.detail
    assert "refused /output/result.json: 237 bytes is over the limit of 100 bytes" in outcome.detail
    assert outcome.result_json is None


async def test_fifos_and_folders_are_refused_without_hanging(make_executor: MakeExecutor) -> None:
    executor = await make_executor()
    outcome = await executor.run(make_job(textwrap.dedent("""
        os.mkfifo("/output/summary.md")
        os.mkdir("/output/diff.patch")
    """)))
    assert [a.name for a in outcome.artifacts] == ["agent.log"]
    assert "refused /output/summary.md: not a regular file" in outcome.detail
    assert "refused /output/diff.patch: not a regular file" in outcome.detail


async def test_agent_log_keeps_its_head_and_tail(make_executor: MakeExecutor, blobs: FsBlobStore) -> None:
    executor = await make_executor(output_limits=OutputLimits(log_head_bytes=1000, log_tail_bytes=1000))
    outcome = await executor.run(make_job(textwrap.dedent("""
        out = sys.stdout.buffer
        out.write(b"HEAD-MARK\\n")
        block = b"x" * 1023 + b"\\n"
        for _ in range(50 * 1024):  # 50 MiB
            out.write(block)
        out.write(b"TAIL-MARK\\n")
        out.flush()
    """)))
    assert outcome.exit_code == 0
    log = (await _contents(blobs, outcome.artifacts))["agent.log"]
    assert log.startswith(b"HEAD-MARK\n")
    assert log.endswith(b"TAIL-MARK\n")
    assert len(log) <= 2000 + 100
    omitted = 10 + 50 * 1024 * 1024 + 10 - 2000
    assert f"[... {omitted} bytes of output omitted".encode() in log
    assert f"agent.log truncated: {omitted} bytes of output omitted from the middle" in outcome.detail
