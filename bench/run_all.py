"""Run every benchmark once with its documented defaults (`make bench`); each prints its own figures
next to its baseline. The figures recorded in docs/benchmarks.md come from these same commands."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    ["bench.bench_first_request"],
    ["bench.bench_snapshot", "--repeat", "5"],
    ["bench.bench_upload", "--repeat", "3", "--dir", "/tmp"],
    ["bench.bench_lsp"],
    ["bench.bench_task_page"],
    ["bench.bench_sources", "--repeat", "3"],
    ["bench.bench_scale"],
    ["bench.bench_minio_upload", "--repeat", "3", "--dir", "/tmp"],
    ["bench.bench_kubernetes", "--rounds", "15"],
]


def main() -> int:
    failed = 0
    for module, *args in BENCHMARKS:
        print(f"\n== {module} {' '.join(args)}", flush=True)
        failed += subprocess.run([sys.executable, "-m", module, *args], check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
