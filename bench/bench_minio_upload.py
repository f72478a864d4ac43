"""First upload of a large workspace through a runner on MinIO, against one tar PUT straight to MinIO.

Generates a workspace (default 10,000 files / 100 MB, mixed sizes, as `bench_upload` does), starts a
real nats-server and MinIO (data under --dir), and measures, in one run, on the same MinIO:

- baseline: `tar -cf -` of exactly the snapshot's files streamed into one `put_object` of the minio
  client (length unknown: a multipart upload of 16 MiB parts) into a fresh bucket: the same bytes read
  from the same disk and stored in the same MinIO, as one object, with no hashing;
- first submit through a runner (`codex-sys runner serve --no-worker` on NATS + MinIO, in its own
  process, TCP with a bearer token, a fresh bucket): the real client path, snapshot (every file hashed,
  empty digest cache) + FindMissingBlobs + UploadBlobs (streamed, ~2 MiB messages) + CreateTask (the
  runner checks every blob of the manifest is in MinIO); also the upload step alone;
- re-submit of the unchanged workspace: snapshot with the digest cache loaded from its file (as a new
  `codex-sys run` process does) + FindMissingBlobs + CreateTask: blobs uploaded and milliseconds.

The runner stores one object per distinct file (`cas/<tenant>/<hh>/<sha256>`, see docs/minio.md); the
baseline stores one object in all. Runs alternate baseline and runner --repeat times.

    .venv/bin/python -m bench.bench_minio_upload [--files 10000] [--mbytes 100] [--repeat 3] [--dir /tmp]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from minio import Minio

from bench import bench_upload
from bench._infra import (
    CpuAccounting,
    MinioServer,
    NatsServer,
    base_env,
    distributed,
    infrastructure,
    load_note,
    scratch,
)
from bench.bench_snapshot import generate
from runner.client.snapshot import take_snapshot

PART_BYTES = 16 << 20
CPU_NAMES = ("client", "runner", "minio", "nats-server")


def tar_put(minio: MinioServer, src: Path, files: list[str], bucket: str,
            cpu: CpuAccounting) -> tuple[float, int, dict[str, float]]:
    """Seconds to stream `files` of `src` as an uncompressed tar into one object, its size, and the CPU
    seconds MinIO and this process (the minio client, tar's reads excluded) spent meanwhile."""
    client = Minio(minio.endpoint, access_key=minio.access_key, secret_key=minio.secret_key, secure=False)
    client.make_bucket(bucket)
    with tempfile.NamedTemporaryFile(prefix="cx-tar-list-") as listing:
        listing.write(b"\0".join(f.encode() for f in files))
        listing.flush()
        cpu0 = {n: cpu.total(n) for n in ("minio", "client")}
        started = time.perf_counter()
        with subprocess.Popen(["tar", "-cf", "-", "-C", str(src), "--null", "-T", listing.name],
                              stdout=subprocess.PIPE) as tar:
            assert tar.stdout is not None
            client.put_object(bucket, "workspace.tar", tar.stdout, length=-1, part_size=PART_BYTES)
        elapsed = time.perf_counter() - started
        used = {n: cpu.total(n) - cpu0[n] for n in cpu0}
    if tar.returncode:
        raise RuntimeError(f"tar exited with {tar.returncode}")
    size = client.stat_object(bucket, "workspace.tar").size or 0
    return elapsed, size, used


async def submit_once(ws: Path, address: str, token: str, cache_dir: Path, cpu: CpuAccounting) -> dict[str, float]:
    return await bench_upload.submit_once(
        ws, address, cache_dir, token=token, counters=lambda: {f"cpu {n}": cpu.total(n) for n in CPU_NAMES})


async def through_runner(root: Path, nats: NatsServer, minio: MinioServer, ws: Path,
                         cpu: CpuAccounting) -> dict[str, float]:
    cluster = distributed(root, nats, minio, base_env())
    try:
        runner = await cluster.start_runner()
        cpu.add("runner", runner.proc.pid)
        return await submit_once(ws, runner.address, cluster.token, root / "cache", cpu)
    finally:
        await cluster.close()


def main() -> None:
    args = bench_upload.workspace_arguments(__doc__, "where the workspace and MinIO's data live (/dev/shm: no disk)")
    print(f"machine: {load_note()}")
    with scratch() as root:
        data = Path(tempfile.mkdtemp(prefix="cx-bench-", dir=args.dir))
        cpu = CpuAccounting()
        try:
            ws = data / "ws"
            ws.mkdir()
            generate(ws, args.files, args.mbytes << 20)
            time.sleep(2.5)  # past the digest cache's racy window
            manifest = take_snapshot(ws).manifest
            files = [e.path for e in manifest.entries]
            mb = manifest.total_size / 1e6
            tar_s, tar_cpu, ours = [], [], []
            with infrastructure(data / "servers") as (nats, minio):
                for name, pid in (("client", os.getpid()), ("minio", minio.pid), ("nats-server", nats.pid)):
                    cpu.add(name, pid)
                for i in range(args.repeat):
                    seconds, tar_size, used = tar_put(minio, ws, files, f"tar-baseline-{i}", cpu)
                    tar_s.append(seconds)
                    tar_cpu.append(used)
                    ours.append(asyncio.run(through_runner(root / f"run{i}", nats, minio, ws, cpu)))
        finally:
            cpu.close()
            subprocess.run(["rm", "-rf", str(data)], check=False)
    tar_med = statistics.median(tar_s)
    print(f"workspace: {len(files)} files, {mb:.1f} MB in the snapshot (tar {tar_size / 1e6:.1f} MB), "
          f"workspace and MinIO data under {args.dir}; {args.repeat} runs, medians (min, max)")
    print(f"baseline: tar stream, one PUT to MinIO {tar_med * 1000:8.0f} ms  {mb / tar_med:7.1f} MB/s"
          f"  ({min(tar_s) * 1000:.0f}, {max(tar_s) * 1000:.0f} ms)")
    for key, label in (("first", "first submit (hash+upload+create)"), ("upload", "  upload step alone")):
        values = [o[key] for o in ours]
        med = statistics.median(values)
        print(f"{label:<38}{med * 1000:8.0f} ms  {mb / med:7.1f} MB/s  = {tar_med / med * 100:5.1f}% of tar"
              f"  ({min(values) * 1000:.0f}, {max(values) * 1000:.0f} ms)")
    for key, label in (("snapshot", "  snapshot, cold cache (hashing)"), ("create", "  CreateTask (blobs checked)")):
        values = [o[key] for o in ours]
        print(f"{label:<38}{statistics.median(values) * 1000:8.0f} ms"
              f"  ({min(values) * 1000:.0f}, {max(values) * 1000:.0f} ms)")
    print(f"  blobs uploaded: {int(ours[0]['blobs'])}, bytes: {int(ours[0]['bytes']):,}")
    parts = ", ".join(f"{n} {statistics.median(o[f'cpu {n}'] for o in ours):.1f}" for n in CPU_NAMES)
    print(f"  CPU seconds during the upload step (medians): {parts}")
    parts = ", ".join(f"{n} {statistics.median(u[n] for u in tar_cpu):.1f}" for n in ("minio", "client"))
    print(f"  CPU seconds during the tar PUT (medians): {parts}, tar itself not counted")
    resub = [o["resubmit"] for o in ours]
    print(f"re-submit unchanged (new process):     {statistics.median(resub) * 1000:8.1f} ms"
          f"  ({min(resub) * 1000:.1f}, {max(resub) * 1000:.1f} ms), blobs uploaded: "
          f"{int(max(o['resubmit_blobs'] for o in ours))}")
    after = [o["resubmit"] - o["resubmit_snapshot"] for o in ours]
    print(f"  of which after the snapshot:          {statistics.median(after) * 1000:8.1f} ms"
          f"  ({min(after) * 1000:.1f}, {max(after) * 1000:.1f} ms): manifest, digest check, CreateTask")
    print(f"machine at the end: {load_note()}")


if __name__ == "__main__":
    main()
