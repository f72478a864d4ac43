"""`python -m runner.snapshots.fetch`, the init container of an agent pod, as a real subprocess: a pack
the runner built on MinIO arrives byte for byte through a real presigned URL; a wrong digest, a body cut
short, an expired link, an unreachable host and hostile packs are refused with one clear line (also in
the termination log), the folder left empty, nothing written outside it, and the URL's signature never
printed."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from agent.pod_transfer import PackLink, Transfer
from runner.adapters.minio import MinioBlobStore
from runner.domain.models import EMPTY_DIGEST, FileKind, Manifest, ManifestEntry
from runner.snapshots.fetch import EXIT_DOWNLOAD, EXIT_REFUSED, EXIT_USAGE

from .conftest import FakeStorage, Ran, Route, program_env, run_module

pytestmark = pytest.mark.timeout(60)

TENANT = "tenant-a"
SIGNATURE = "X-Amz-Signature"


class Box:
    """A pod's view: transfer.json, the workspace folder to fill, its neighbours that must stay
    untouched, and the termination log Kubernetes would have made."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "pod"
        self.workspace = self.root / "workspace"
        self.outside = self.root / "outside"
        self.outside.mkdir(parents=True)
        (self.outside / "keep.txt").write_text("untouched\n")
        self.transfer = self.root / "transfer.json"
        self.termination_log = self.root / "termination-log"
        self.termination_log.write_text("")
        self.tmp = tmp_path / "tmp"

    async def fetch(self, transfer: Transfer, *extra: str) -> Ran:
        self.transfer.write_bytes(transfer.to_json())
        return await run_module("runner.snapshots.fetch", "--transfer", str(self.transfer), "--into",
                                str(self.workspace), "--termination-log", str(self.termination_log),
                                "--attempts", "3", "--backoff", "0.05", "--timeout", "5", *extra,
                                env=program_env(self.tmp))

    def assert_refused(self, ran: Ran, status: int, *phrases: str) -> str:
        assert ran.returncode == status, ran.stderr
        last = ran.stderr.strip().splitlines()[-1]
        for phrase in phrases:
            assert phrase in last, last
        assert self.termination_log.read_text() == last
        assert SIGNATURE not in ran.stderr and SIGNATURE not in ran.stdout
        assert not any(self.workspace.iterdir()), "a failed fetch leaves the folder empty"
        assert sorted(p.name for p in self.root.iterdir()) == ["outside", "termination-log", "transfer.json",
                                                               "workspace"]
        assert [p.name for p in self.outside.iterdir()] == ["keep.txt"]
        return last


def link(url: str, data: bytes) -> PackLink:
    return PackLink(url, hashlib.sha256(data).hexdigest(), len(data))


async def snapshot(store: MinioBlobStore) -> tuple[Manifest, dict[str, bytes]]:
    files = {"README.md": b"# readme\n", "bin/tool": b"#!/bin/sh\necho tool\n", "src/pkg/mod.py": b"x = 1\n",
             "data/big.bin": os.urandom(3 << 20), "src/pkg/up": b"../../README.md",
             "deep/a/b/c/d.txt": "ünïcode\n".encode(), "empty.txt": b""}
    kinds = {"bin/tool": FileKind.EXECUTABLE, "src/pkg/up": FileKind.SYMLINK}
    entries = []
    for path, data in files.items():
        digest = await store.put_bytes(TENANT, data) if data else EMPTY_DIGEST
        entries.append(ManifestEntry(path, kinds.get(path, FileKind.FILE), digest))
    return Manifest(tuple(entries)), files


async def test_a_pack_built_by_the_runner_arrives_byte_for_byte(store: MinioBlobStore, tmp_path: Path) -> None:
    manifest, files = await snapshot(store)
    ref = await store.packs.ensure(TENANT, manifest)
    box = Box(tmp_path)
    url = store.pack_url(TENANT, ref, expires_s=60)
    ran = await box.fetch(Transfer(PackLink(url, ref.digest.hash, ref.digest.size)))
    assert ran.returncode == 0, ran.stderr
    assert SIGNATURE not in ran.stderr and "X-Amz-Credential" not in ran.stderr
    assert box.termination_log.read_text() == ""
    for path, data in files.items():
        target = box.workspace / path
        if path == "src/pkg/up":
            assert os.readlink(target) == data.decode()
            continue
        assert target.read_bytes() == data
        assert stat.S_IMODE(target.stat().st_mode) == (0o755 if path == "bin/tool" else 0o644)
    found = sorted(str(p.relative_to(box.workspace)) for p in box.workspace.rglob("*") if not p.is_dir())
    assert found == sorted(files)


async def test_a_wrong_digest_is_refused(store: MinioBlobStore, tmp_path: Path) -> None:
    manifest, _ = await snapshot(store)
    ref = await store.packs.ensure(TENANT, manifest)
    box = Box(tmp_path)
    url = store.pack_url(TENANT, ref, expires_s=60)
    wrong = hashlib.sha256(b"another pack").hexdigest()
    ran = await box.fetch(Transfer(PackLink(url, wrong, ref.digest.size)))
    box.assert_refused(ran, EXIT_REFUSED, "not the pack the runner stated", wrong, ref.digest.hash)


async def test_a_wrong_size_is_refused_before_unpacking(store: MinioBlobStore, tmp_path: Path) -> None:
    manifest, _ = await snapshot(store)
    ref = await store.packs.ensure(TENANT, manifest)
    box = Box(tmp_path)
    url = store.pack_url(TENANT, ref, expires_s=60)
    ran = await box.fetch(Transfer(PackLink(url, ref.digest.hash, ref.digest.size - 512)))
    box.assert_refused(ran, EXIT_REFUSED, f"the server offers {ref.digest.size} bytes",
                       f"pack is {ref.digest.size - 512} bytes")


async def test_an_expired_link_is_refused_without_retrying(store: MinioBlobStore, tmp_path: Path) -> None:
    manifest, _ = await snapshot(store)
    ref = await store.packs.ensure(TENANT, manifest)
    url = store.pack_url(TENANT, ref, expires_s=1)
    await asyncio.sleep(2.1)
    box = Box(tmp_path)
    ran = await box.fetch(Transfer(PackLink(url, ref.digest.hash, ref.digest.size)))
    last = box.assert_refused(ran, EXIT_DOWNLOAD, "could not download the snapshot pack", "HTTP 403",
                              "expired", f"/packs/{TENANT}/{ref.key}", "<signature redacted>")
    assert "attempts" not in last and "trying again" not in ran.stderr


async def test_an_unreachable_host_is_retried_then_reported(tmp_path: Path) -> None:
    data = b"\0" * 10240
    box = Box(tmp_path)
    ran = await box.fetch(Transfer(link("http://127.0.0.1:9/packs/p.tar?X-Amz-Signature=00ff", data)))
    last = box.assert_refused(ran, EXIT_DOWNLOAD, "GET http://127.0.0.1:9/packs/p.tar?<signature redacted>",
                              "connection refused", "gave up after 3 attempts")
    assert ran.stderr.count("trying again") == 2, last


async def test_a_download_cut_short_is_retried_then_reported(storage: FakeStorage, tmp_path: Path) -> None:
    data = tar_of(file_member("a.txt", b"x" * 100_000))
    storage.routes["/pack"] = route = Route(data, mode="cut")
    box = Box(tmp_path)
    ran = await box.fetch(Transfer(link(storage.url("/pack"), data)))
    box.assert_refused(ran, EXIT_DOWNLOAD, f"the download stopped after {len(data) // 2} of {len(data)} bytes",
                       "gave up after 3 attempts")
    assert storage.requests == ["GET /pack"] * 3

    # Two 503s, then the whole body: the third attempt succeeds.
    route.mode, route.failures = "exact", 2
    storage.requests.clear()
    ran = await box.fetch(Transfer(link(storage.url("/pack"), data)))
    assert ran.returncode == 0, ran.stderr
    assert (box.workspace / "a.txt").read_bytes() == b"x" * 100_000
    assert storage.requests == ["GET /pack"] * 3
    assert "HTTP 503" in ran.stderr and SIGNATURE not in ran.stderr


# ---- hostile packs, each with its true digest: the unpacker's own checks refuse them --------------------


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def file_member(name: str, data: bytes = b"data\n", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o777 if kind == tarfile.SYMTYPE else 0o644
    return info, b""


HOSTILE = {
    "dot-dot": ([file_member("a.txt"), file_member("../outside/evil.txt")], "not canonical"),
    "absolute": ([file_member("/tmp/evil.txt")], "is absolute"),
    "symlink-out": ([special("out", tarfile.SYMTYPE, "../outside")], "outside the workspace"),
    "symlink-absolute": ([special("etc", tarfile.SYMTYPE, "/etc")], "outside the workspace"),
    "symlink-chain-out": ([special("a", tarfile.SYMTYPE, "."), special("b", tarfile.SYMTYPE, "a/..")],
                          "symlink 'b' points to 'a/..', outside the workspace"),
    "write-through-symlink": ([special("d", tarfile.SYMTYPE, "sub"), file_member("d/x.txt")],
                              "entry 'd/x.txt' lies under a file or a symlink"),
    "hard-link": ([file_member("a.txt"), special("h", tarfile.LNKTYPE, "a.txt")], "'h' is a hard link"),
    "device": ([special("dev", tarfile.CHRTYPE)], "'dev' is a character device"),
    "block-device": ([special("blk", tarfile.BLKTYPE)], "'blk' is a block device"),
    "fifo": ([special("fifo", tarfile.FIFOTYPE)], "'fifo' is a FIFO"),
    "folder": ([special("dir", tarfile.DIRTYPE)], "'dir' is a folder"),
    "duplicate": ([file_member("a.txt", b"one\n"), file_member("a.txt", b"two\n")], "'a.txt' appears twice"),
    "unsorted": ([file_member("b.txt"), file_member("a.txt")], "'a.txt' is out of order"),
    "not-canonical": ([file_member("a//b.txt")], "not canonical"),
    "not-a-tar": (None, "not a readable tar archive"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_packs_are_refused(storage: FakeStorage, tmp_path: Path, case: str) -> None:
    members, phrase = HOSTILE[case]
    data = tar_of(*members) if members is not None else b"this is no tar archive\n" * 1000
    storage.routes["/pack"] = Route(data)
    box = Box(tmp_path)
    ran = await box.fetch(Transfer(link(storage.url("/pack"), data)))
    box.assert_refused(ran, EXIT_REFUSED, phrase)
    assert storage.requests == ["GET /pack"], "a refused pack is not downloaded again"


async def test_a_pack_longer_than_its_stated_size_is_cut_off(storage: FakeStorage, tmp_path: Path) -> None:
    """A server that sends no length cannot make the fetch read past the size the runner stated."""
    data = tar_of(file_member("a.txt", b"a" * 5000), file_member("b.txt", os.urandom(200_000)))
    storage.routes["/pack"] = Route(data, mode="unsized")
    box = Box(tmp_path)
    stated = link(storage.url("/pack"), data[:6144])
    ran = await box.fetch(Transfer(stated))
    box.assert_refused(ran, EXIT_REFUSED, "longer than its stated size (6144 bytes)")


async def test_unusable_inputs_are_named(tmp_path: Path) -> None:
    box = Box(tmp_path)
    box.transfer.write_text('{"pack": {"url": "http://x/p?X-Amz-Signature=1", "digest": "md5:00", "size": 1}}')
    ran = await run_module("runner.snapshots.fetch", "--transfer", str(box.transfer), "--into", str(box.workspace),
                           "--termination-log", str(box.termination_log), env=program_env(box.tmp))
    assert ran.returncode == EXIT_USAGE
    assert ran.stderr.strip() == "transfer.json: pack.digest must be 'sha256:' and 64 lowercase hex digits"
    box.transfer.write_text(json.dumps({"pack": None, "outputs": {}}))
    ran = await run_module("runner.snapshots.fetch", "--transfer", str(box.transfer), "--into", str(box.workspace),
                           "--termination-log", str(box.termination_log), env=program_env(box.tmp))
    assert (ran.returncode, ran.stderr.strip()) == (EXIT_USAGE, f"{box.transfer} names no snapshot pack")

    (box.workspace / "left-over").mkdir(parents=True)
    data = tar_of(file_member("a.txt"))
    ran = await box.fetch(Transfer(link("http://127.0.0.1:9/p", data)))
    assert ran.returncode == EXIT_USAGE
    assert ran.stderr.strip().endswith("is not empty; the snapshot goes into an empty folder")
    assert (box.workspace / "left-over").is_dir()
