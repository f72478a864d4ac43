"""Snapshot upload to the embedded runner over its unix socket, against a tar stream over a unix socket.

Generates a workspace (default 10,000 files / 100 MB) and measures, in one run:

- baseline: `tar -cf -` of the workspace streamed over a unix socket into `tar -xf -` on the other side
  (the same bytes crossing the same kind of socket and landing on the same disk, with no hashing);
- first submit: snapshot (every file hashed, empty digest cache) + FindMissingBlobs + upload of every
  blob + CreateTask, into a fresh runner home; also the upload step alone;
- re-submit of the unchanged workspace: snapshot with the digest cache warm (loaded from its file, as a
  new `codex-sys run` process does) + FindMissingBlobs + CreateTask: blobs uploaded and milliseconds.

The runner is the embedded one with the API only (no worker): the figures are the submit path.

    .venv/bin/python -m bench.bench_upload [--files 10000] [--mbytes 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.bench_snapshot import generate
from runner.client.connection import RunnerClient
from runner.client.digest_cache import DigestCache
from runner.client.snapshot import take_snapshot
from runner.client.upload import upload_snapshot
from runner.composition import EmbeddedConfig, EmbeddedRunner
from runner.config import HomeLayout, LLMSettings


def tar_over_socket(src: Path, dest: Path, sock_path: Path) -> float:
    """Seconds to stream `src` as tar over a unix socket and unpack it into `dest`."""
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
    with subprocess.Popen(["tar", "-cf", "-", "-C", str(src), "."], stdout=subprocess.PIPE) as tar:
        assert tar.stdout is not None
        while data := tar.stdout.read(1 << 20):
            client.sendall(data)
    client.close()
    receiver.join()
    elapsed = time.perf_counter() - started
    server.close()
    sock_path.unlink()
    return elapsed


async def submit_once(ws: Path, home: Path, cache_dir: Path) -> dict[str, float]:
    config = EmbeddedConfig(home=HomeLayout(home), llm=LLMSettings(None, None, "bench"), run_worker=False)
    async with EmbeddedRunner(config), RunnerClient(f"unix:{home / 'runner.sock'}") as client:
        t0 = time.perf_counter()
        cache = DigestCache.for_workspace(ws, cache_dir)
        snap = await asyncio.to_thread(take_snapshot, ws, cache=cache)
        t1 = time.perf_counter()
        stats = await upload_snapshot(client, snap.manifest, snap.sources)
        t2 = time.perf_counter()
        await client.create_task("bench", manifest_digest=stats.manifest_digest)
        t3 = time.perf_counter()
        cache.save()
        # The unchanged re-submit, as a new CLI process sees it: the cache loaded from its file.
        r0 = time.perf_counter()
        cache2 = DigestCache.for_workspace(ws, cache_dir)
        snap2 = await asyncio.to_thread(take_snapshot, ws, cache=cache2)
        stats2 = await upload_snapshot(client, snap2.manifest, snap2.sources)
        await client.create_task("bench again", manifest_digest=stats2.manifest_digest)
        r1 = time.perf_counter()
        return {"snapshot": t1 - t0, "upload": t2 - t1, "create": t3 - t2, "first": t3 - t0,
                "blobs": stats.blobs_uploaded, "bytes": stats.bytes_uploaded,
                "resubmit": r1 - r0, "resubmit_blobs": stats2.blobs_uploaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mbytes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cx-bench-", dir="/tmp"))
    try:
        ws = tmp / "ws"
        ws.mkdir()
        generate(ws, args.files, args.mbytes << 20)
        time.sleep(2.5)  # past the digest cache's racy window
        total = sum(p.stat().st_size for p in ws.rglob("*") if p.is_file() and not p.is_symlink())
        tar_s, ours = [], []
        for i in range(args.repeat):
            tar_s.append(tar_over_socket(ws, tmp / f"tar{i}", tmp / f"tar{i}.sock"))
            shutil.rmtree(tmp / f"tar{i}")
            ours.append(asyncio.run(submit_once(ws, tmp / f"h{i}", tmp / f"cache{i}")))
            shutil.rmtree(tmp / f"h{i}")
        mb = total / 1e6
        tar_med = statistics.median(tar_s)
        print(f"workspace: {args.files} files, {mb:.1f} MB; {args.repeat} runs, medians (min)")
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
