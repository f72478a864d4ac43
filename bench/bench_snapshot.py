"""Benchmark of the workspace snapshotter, with baselines measured in the same run.

Generates a workspace (default 10,000 files, 100 MB, in nested folders, with a .gitignore, an ignored
build folder, a few symbolic links and executables, committed to a git repository) and prints:

- cold: first snapshot, every file hashed (empty digest cache); against reading every file and hashing
  it with hashlib in a plain loop, and hashlib alone over the same number of bytes in memory;
- warm: unchanged workspace, as `codex-sys run` sees it (a new process: load the cache file, then
  snapshot) and as the language server sees it (cache kept in memory); against a plain `os.walk` with an
  lstat per file, `git ls-files --others --exclude-standard` (a listing in C, with no stat of each file)
  and `git status` (which, like a warm snapshot, stats every file to find what changed);
- cold with big files (8 x 16 MiB): hashing on worker threads against hashlib in one thread;
- one file edited: warm, with one cache miss.

Each figure is the minimum and median of --repeat runs, interleaved with its baseline. The tree is
left 2.5 s to age before the first snapshot: files modified within the digest cache's racy window (2 s)
of a snapshot are hashed again by the next one, by design (see runner.client.digest_cache).

    .venv/bin/python bench/bench_snapshot.py [--files 10000] [--mbytes 100] [--repeat 9]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from runner.client.digest_cache import DigestCache
from runner.client.snapshot import take_snapshot

GITIGNORE = b"""# typical
*.pyc
__pycache__/
/build/
node_modules/
.venv/
*.log
!keep.log
dist/
"""


def generate(root: Path, files: int, total_bytes: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    pool = os.urandom(1 << 20)
    mean = total_bytes / files
    (root / ".gitignore").write_bytes(GITIGNORE)
    per_folder = 20
    for i in range(files - 1):
        folder = root / f"pkg{i // (per_folder * 25):02d}" / f"mod{(i // per_folder) % 25:02d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = min(int(rnd.expovariate(1 / mean)), (1 << 20) - 64)
        start = rnd.randrange(0, (1 << 20) - size)
        path = folder / (f"file{i:05d}.py" if i % 10 else f"tool{i:05d}.sh")
        path.write_bytes(pool[start:start + size] + str(i).encode())
        if i % 10 == 0:
            path.chmod(0o755)
        if i % 500 == 1:
            os.symlink(path.name, folder / f"link{i:05d}")
    build = root / "build"
    build.mkdir()
    for i in range(500):
        (build / f"obj{i}.o").write_bytes(pool[:1000])
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "workspace"], check=True)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def row(name: str, samples: list[float], note: str = "") -> None:
    print(f"  {name:<48} min {min(samples) * 1e3:8.1f} ms   median {statistics.median(samples) * 1e3:8.1f} ms"
          f"  {note}")


def baseline_walk(root: str) -> int:
    n = 0
    for folder, _, names in os.walk(root):
        for name in names:
            os.lstat(os.path.join(folder, name))
            n += 1
    return n


def baseline_read_hash(paths: list[str]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            hashlib.sha256(f.read()).digest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mbytes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--dir", help="generate the workspace here (default: a temporary folder, removed after)")
    args = parser.parse_args()

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    root = base / "workspace"
    cache_dir = base / "cache"
    try:
        if not root.exists():
            root.mkdir(parents=True)
            generate(root, args.files, args.mbytes * 1_000_000)
            time.sleep(2.5)
        snap = take_snapshot(root)
        paths = [str(root / e.path) for e in snap.manifest.entries if e.kind.value != "symlink"]
        total = snap.stats.total_bytes
        print(f"workspace: {snap.stats.files:,} files ({len(paths):,} regular), {total / 1e6:.1f} MB, "
              f"{snap.stats.folders} folders, {snap.stats.ignored} ignored entries; cpus={os.cpu_count()}")
        git = shutil.which("git")

        print("cold (every file hashed):")
        cold, read_hash, pure_hash = [], [], []
        in_memory = partial(hashlib.sha256, os.urandom(total))
        for _ in range(max(3, args.repeat // 2)):
            cold.append(timed(lambda: take_snapshot(root, cache=DigestCache(None))))
            read_hash.append(timed(lambda: baseline_read_hash(paths)))
            pure_hash.append(timed(in_memory))
        del in_memory
        row("take_snapshot, empty cache", cold)
        row("baseline: open+read+sha256 per file, plain loop", read_hash)
        row("baseline: sha256 of the same bytes in memory", pure_hash)

        cache = DigestCache.for_workspace(root, cache_dir)
        take_snapshot(root, cache=cache)
        save = timed(cache.save)
        cache_file = next(cache_dir.iterdir())
        print(f"digest cache: saved in {save * 1e3:.1f} ms, {cache_file.stat().st_size / 1e6:.2f} MB")

        print("warm (unchanged workspace):")
        load, fresh, memory, walk, ls_files, status = [], [], [], [], [], []
        for _ in range(args.repeat):
            load.append(timed(lambda: DigestCache.for_workspace(root, cache_dir)))
            fresh.append(timed(partial(take_snapshot, root, cache=DigestCache.for_workspace(root, cache_dir))))
            memory.append(timed(lambda: take_snapshot(root, cache=cache)))
            walk.append(timed(lambda: baseline_walk(str(root))))
            if git:
                ls_files.append(timed(lambda: subprocess.run(
                    [git, "-C", str(root), "ls-files", "--others", "--exclude-standard", "-z"],
                    check=True, stdout=subprocess.DEVNULL)))
                status.append(timed(lambda: subprocess.run(
                    [git, "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                    check=True, stdout=subprocess.DEVNULL)))
        final = take_snapshot(root, cache=cache)
        assert final.stats.hashed_files == 0, final.stats
        row("load the digest cache file", load)
        row("take_snapshot, cache just loaded (CLI)", fresh)
        row("take_snapshot, cache in memory (language server)", memory)
        row("load + take_snapshot (CLI total)", [a + b for a, b in zip(load, fresh, strict=True)])
        row("baseline: os.walk + lstat per file", walk)
        if ls_files:
            row("baseline: git ls-files --others --exclude-standard", ls_files, "(no stat per file)")
            row("baseline: git status (stats every tracked file)", status)

        big = base / "big"
        big.mkdir(exist_ok=True)
        blob = os.urandom(16 << 20)
        for i in range(8):
            (big / f"f{i}.bin").write_bytes(blob[i:] + blob[:i])
        big_paths = [str(p) for p in sorted(big.iterdir())]
        print(f"cold, big files (8 x 16 MiB, hashed on worker threads; cpus={os.cpu_count()}):")
        cold_big, read_hash_big, pure_big = [], [], []
        in_memory_big = partial(hashlib.sha256, blob * 8)
        for _ in range(max(3, args.repeat // 2)):
            cold_big.append(timed(lambda: take_snapshot(big)))
            read_hash_big.append(timed(lambda: baseline_read_hash(big_paths)))
            pure_big.append(timed(in_memory_big))
        row("take_snapshot", cold_big)
        row("baseline: open+read+sha256 per file, plain loop", read_hash_big)
        row("baseline: sha256 of the same bytes in memory", pure_big)

        print("one file edited:")
        edited = Path(paths[len(paths) // 2])
        one = []
        for i in range(args.repeat):
            edited.write_bytes(edited.read_bytes() + str(i).encode())
            one.append(timed(lambda: take_snapshot(root, cache=cache)))
        row("take_snapshot, cache in memory", one)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
