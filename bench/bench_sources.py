"""Git and zip task sources: what the worker's fetch costs next to the plain tools, in the same run.

* zip: `zip_archive` checks + unpacks a 2,000-file archive and `ingest` stores it in an embedded BlobStore,
  against `unzip -q` of the same archive (no checks, no hashing, no store);
* git: `SourceFetcher` (ls-remote, shallow fetch, checkout, ingest) of a 2,000-file repository served by a
  local `git daemon`, against a plain `git clone --depth 1` of it.

Prints the median of `--repeat` runs of each. Usage: python -m bench.bench_sources [--files N] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from git_servers import GitDaemon, make_repo  # noqa: E402

from runner.adapters.embedded import FsBlobStore  # noqa: E402
from runner.domain import models as m  # noqa: E402
from runner.sources.fetcher import SourceFetcher  # noqa: E402
from runner.sources.ingest import IngestLimits  # noqa: E402
from runner.sources.settings import SourceSettings  # noqa: E402

LIMITS = IngestLimits(max_files=100_000, max_total_bytes=2 << 30, max_file_bytes=256 << 20)


def _files(count: int) -> dict[str, bytes]:
    # Source-like files of 1-6 KiB in 40 folders.
    return {f"pkg{i % 40}/mod{i}.py": (f"# module {i}\n" + "x = 1\n" * (150 + (i % 7) * 120)).encode()
            for i in range(count)}


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(f"project-main/{name}", data)
    return buf.getvalue()


def _timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


async def _fetch(fetcher: SourceFetcher, record: m.TaskRecord, store: FsBlobStore, attempt: int) -> float:
    started = time.perf_counter()
    await fetcher.fetch(record, attempt, store)
    return time.perf_counter() - started


async def run(files: int, repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="cx-bench-sources-"))
    try:
        content = _files(files)
        archive = work / "project.zip"
        archive.write_bytes(_zip(content))
        settings = SourceSettings()
        zip_ours, zip_base, git_ours, git_base = [], [], [], []
        repo = make_repo(work / "repos", "bench.git", files=content)
        daemon = GitDaemon(work, work / "repos").start()
        try:
            for i in range(repeat):
                # A fresh store each round: every blob is new, as for a first fetch.
                async with FsBlobStore(work / f"blobs{i}", 256 << 20) as store:
                    digest = await store.put_bytes("bench", archive.read_bytes())
                    record = m.TaskRecord(id=f"z{i}", tenant="bench", instruction="x", model="m",
                                          manifest_digest=None, source=m.TaskSource(m.SourceKind.ZIP,
                                                                                    zip_digest=digest))
                    zip_ours.append(await _fetch(SourceFetcher(settings, work / "src", LIMITS), record, store, 1))
                # Another fresh store: the repository holds the same files, which must not be found stored.
                async with FsBlobStore(work / f"git-blobs{i}", 256 << 20) as store:
                    record = m.TaskRecord(id=f"g{i}", tenant="bench", instruction="x", model="m",
                                          manifest_digest=None, source=m.TaskSource(
                                              m.SourceKind.GIT, git_url=daemon.url(repo.name)))
                    git_ours.append(await _fetch(SourceFetcher(settings, work / "src", LIMITS), record, store, 1))
                out = work / f"unzip{i}"
                zip_base.append(_timed(lambda out=out: subprocess.run(
                    ["unzip", "-q", str(archive), "-d", str(out)], check=True)))
                clone = work / f"clone{i}"
                git_base.append(_timed(lambda clone=clone: subprocess.run(
                    ["git", "clone", "-q", "--depth", "1", daemon.url(repo.name), str(clone)], check=True,
                    env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"})))
        finally:
            daemon.stop()
        size = archive.stat().st_size
        print(f"zip: {files} files, archive {size / 1e6:.1f} MB, median of {repeat}")
        print(f"  unpack + checks + ingest (SourceFetcher): {statistics.median(zip_ours) * 1000:7.0f} ms")
        print(f"  unzip -q (baseline):                      {statistics.median(zip_base) * 1000:7.0f} ms")
        print(f"git: {files} files over git://, median of {repeat}")
        print(f"  ls-remote + clone --depth 1 + ingest:     {statistics.median(git_ours) * 1000:7.0f} ms")
        print(f"  git clone --depth 1 (baseline):           {statistics.median(git_base) * 1000:7.0f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.files, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
