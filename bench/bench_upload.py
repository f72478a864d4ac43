"""Snapshot upload to the embedded runner over its unix socket, against a tar stream over a unix socket.

Generates a workspace (default 10,000 files / 100 MB) and measures, in one run:

- baseline: `tar -cf -` of the workspace streamed over a unix socket into `tar -xf -` on the other side
  (the same bytes crossing the same kind of socket and landing on the same disk, with no hashing);
- first submit: snapshot (every file hashed, empty digest cache) + FindMissingBlobs + upload of every
  blob + CreateTask, into a fresh runner home; also the upload step alone;
- re-submit of the unchanged workspace: snapshot with the digest cache warm (loaded from its file, as a
  new `codex-sys run` process does) + FindMissingBlobs + CreateTask: blobs uploaded and milliseconds.

The runner is the embedded one with the API only (`codex-sys runner serve --no-worker`) in its own
process, as the CLI meets it: the figures are the submit path.

    .venv/bin/python -m bench.bench_upload [--files 10000] [--mbytes 100] [--repeat 3] [--dir /dev/shm]

On a disk whose file creation is slow (about 0.4-1 ms per file on this VM's ext4), both sides are
bound by the disk and vary with its write-back; on tmpfs (`--dir /dev/shm`) the figures show the
protocol's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.bench_snapshot import generate
from runner.client.connection import RunnerClient, is_serving
from runner.client.digest_cache import DigestCache
from runner.client.snapshot import take_snapshot
from runner.client.upload import submit_task, upload_snapshot


def tar_over_socket(src: Path, files: list[str], dest: Path, sock_path: Path) -> float:
    """Seconds to stream `files` of `src` as tar over a unix socket and unpack them into `dest`."""
    dest.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)

    def receive() -> None:
        conn, _ = server.accept()
        with conn, subprocess.Popen(["tar", "-xf", "-", "-C", str(dest)], stdin=subprocess.PIPE) as untar:
            assert untar.stdin is not None
            while data := conn.recv(1 << 20):
                untar.stdin.write(data)
            untar.stdin.close()
            untar.wait()

    started = time.perf_counter()
    receiver = threading.Thread(target=receive)
    receiver.start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(sock_path))
    listing = sock_path.with_suffix(".list")
    listing.write_bytes(b"\0".join(f.encode() for f in files))
    with subprocess.Popen(["tar", "-cf", "-", "-C", str(src), "--null", "-T", str(listing)],
                          stdout=subprocess.PIPE) as tar:
        assert tar.stdout is not None
        while data := tar.stdout.read(1 << 20):
            client.sendall(data)
    client.close()
    receiver.join()
    elapsed = time.perf_counter() - started
    server.close()
    sock_path.unlink()
    return elapsed


@contextlib.contextmanager
def runner_process(home: Path) -> Iterator[str]:
    """An embedded runner (API only) in its own process, as `codex-sys run` meets it."""
    env = {**os.environ, "CODEX_SYS_HOME": str(home), "CODEX_SYS_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli.main", "runner", "serve", "--no-worker"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"unix:{home / 'runner.sock'}"
    try:
        deadline = time.monotonic() + 30
        while not asyncio.run(is_serving(address, 0.5)):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the runner did not start")
            time.sleep(0.05)
        yield address
    finally:
        proc.terminate()
        proc.wait(30)


async def submit_once(ws: Path, address: str, cache_dir: Path, *, token: str | None = None,
                      counters: Callable[[], dict[str, float]] | None = None) -> dict[str, float]:
    """A first submit and an unchanged re-submit; with `counters`, what they count during the upload
    step (e.g. CPU seconds per process) is added to the result."""
    async with RunnerClient(address, token=token) as client:
        t0 = time.perf_counter()
        cache = DigestCache.for_workspace(ws, cache_dir)
        snap = await asyncio.to_thread(take_snapshot, ws, cache=cache)
        t1 = time.perf_counter()
        before = counters() if counters else {}
        stats = await upload_snapshot(client, snap.manifest, snap.sources)
        t2 = time.perf_counter()
        used = {name: value - before[name] for name, value in counters().items()} if counters else {}
        await client.create_task("bench", manifest_digest=stats.manifest_digest)
        t3 = time.perf_counter()
        cache.save()
        # The unchanged re-submit, as a new CLI process sees it: the cache loaded from its file.
        r0 = time.perf_counter()
        cache2 = DigestCache.for_workspace(ws, cache_dir)
        snap2 = await asyncio.to_thread(take_snapshot, ws, cache=cache2)
        _, stats2 = await submit_task(client, snap2.manifest, snap2.sources, "bench again")
        r1 = time.perf_counter()
        return {"snapshot": t1 - t0, "upload": t2 - t1, "create": t3 - t2, "first": t3 - t0,
                "blobs": stats.blobs_uploaded, "bytes": stats.bytes_uploaded,
                "resubmit": r1 - r0, "resubmit_snapshot": snap2.stats.seconds,
                "resubmit_blobs": stats2.blobs_uploaded, **used}


def workspace_arguments(description: str | None, dir_help: str) -> argparse.Namespace:
    """The arguments of the upload benchmarks: the generated workspace, the repeats, the folder."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mbytes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default="/tmp", help=dir_help)
    return parser.parse_args()


def main() -> None:
    args = workspace_arguments(
        __doc__, "where the workspace, the runner's blobs and the tar target live (/dev/shm: no disk)")
    tmp = Path(tempfile.mkdtemp(prefix="cx-bench-", dir=args.dir))
    try:
        ws = tmp / "ws"
        ws.mkdir()
        generate(ws, args.files, args.mbytes << 20)
        time.sleep(2.5)  # past the digest cache's racy window
        # The baseline sends exactly the files the snapshot holds (not .git, not ignored files).
        manifest = take_snapshot(ws).manifest
        files = [e.path for e in manifest.entries]
        total = manifest.total_size
        tar_s, ours = [], []
        for i in range(args.repeat):
            tar_s.append(tar_over_socket(ws, files, tmp / f"tar{i}", tmp / f"tar{i}.sock"))
            shutil.rmtree(tmp / f"tar{i}")
            with runner_process(tmp / f"h{i}") as address:
                ours.append(asyncio.run(submit_once(ws, address, tmp / f"cache{i}")))
            shutil.rmtree(tmp / f"h{i}")
        mb = total / 1e6
        tar_med = statistics.median(tar_s)
        print(f"workspace: {len(files)} files, {mb:.1f} MB in the snapshot, under {args.dir}; "
              f"{args.repeat} runs, medians (min)")
        print(f"baseline tar over a unix socket:   {tar_med * 1000:8.0f} ms  {mb / tar_med:7.1f} MB/s"
              f"  (min {min(tar_s) * 1000:.0f} ms)")
        for key, label in (("first", "first submit (hash+upload+create)"), ("upload", "  upload step alone"),
                           ("snapshot", "  snapshot, cold cache")):
            values = [o[key] for o in ours]
            med = statistics.median(values)
            print(f"{label:<35}{med * 1000:8.0f} ms  {mb / med:7.1f} MB/s  = {tar_med / med * 100:5.1f}% of tar"
                  f"  (min {min(values) * 1000:.0f} ms)")
        print(f"  blobs uploaded: {int(ours[0]['blobs'])}, bytes: {int(ours[0]['bytes']):,}")
        resub = [o["resubmit"] for o in ours]
        print(f"re-submit unchanged (new process):  {statistics.median(resub) * 1000:8.1f} ms"
              f"  (min {min(resub) * 1000:.1f} ms), blobs uploaded: {int(max(o['resubmit_blobs'] for o in ours))}")
        after = [o["resubmit"] - o["resubmit_snapshot"] for o in ours]
        print(f"  of which after the snapshot:       {statistics.median(after) * 1000:8.1f} ms"
              f"  (min {min(after) * 1000:.1f} ms): manifest, digest check, CreateTask")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
