"""Snapshot size limits, and errors that tell the user which files to leave out.

A workspace over a limit is almost always one forgotten folder (`node_modules/`, a build output, a
dataset), so each error names the numbers, the limit, and the biggest offenders, and says what to do.
"""

from __future__ import annotations

import heapq
import posixpath
from collections import Counter
from collections.abc import Iterable

from runner.domain.errors import ResourceExhausted

__all__ = ["check_limits", "format_bytes", "too_many_files"]

_ADVICE = "add them to .gitignore or to the snapshot's exclude patterns"
_SHOWN = 5


def format_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def too_many_files(root: str, max_files: int, paths: Iterable[str]) -> ResourceExhausted:
    """The walk stopped once it had more than `max_files` files, `paths` being those seen so far."""
    seen = list(paths)
    folders = _heaviest_folders(seen)
    where = ", ".join(f"{folder}/ ({count:,})" for folder, count in folders)
    hint = f"; of the first {len(seen):,}, most are under {where}" if where else ""
    return ResourceExhausted(
        f"workspace {root} has more than {max_files:,} files (the limit){hint}; "
        f"{_ADVICE.replace('them', 'such folders')}")


def check_limits(root: str, sizes: Iterable[tuple[str, int]], *, max_files: int, max_total_bytes: int,
                 max_file_bytes: int) -> None:
    """Raise ResourceExhausted when the files (path, size) break a limit."""
    files = list(sizes)
    if len(files) > max_files:
        raise too_many_files(root, max_files, (path for path, _ in files))
    too_big = [(path, size) for path, size in files if size > max_file_bytes]
    if too_big:
        shown = ", ".join(f"{path} ({format_bytes(size)})" for path, size in _largest(too_big))
        more = f" and {len(too_big) - _SHOWN:,} more" if len(too_big) > _SHOWN else ""
        raise ResourceExhausted(
            f"{len(too_big):,} file(s) of workspace {root} are larger than the per-file limit of "
            f"{format_bytes(max_file_bytes)}: {shown}{more}; {_ADVICE}")
    total = sum(size for _, size in files)
    if total > max_total_bytes:
        # The largest files, leaving out any too small to matter (under 1% of the total).
        largest = [f for i, f in enumerate(_largest(files)) if i == 0 or f[1] * 100 >= total]
        shown = ", ".join(f"{path} ({format_bytes(size)})" for path, size in largest)
        raise ResourceExhausted(
            f"workspace {root} has {format_bytes(total)} in {len(files):,} files; the limit is "
            f"{format_bytes(max_total_bytes)}; largest: {shown}; {_ADVICE}")


def _largest(files: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return heapq.nlargest(_SHOWN, files, key=lambda f: (f[1], f[0]))


def _heaviest_folders(paths: Iterable[str]) -> list[tuple[str, int]]:
    """The folders that explain most of the files: among folders holding at least 5% of them, those
    none of whose subfolders holds 90% of theirs (so `a/node_modules`, not `a`), biggest first."""
    counts: Counter[str] = Counter()
    total = 0
    for path in paths:
        total += 1
        folder = posixpath.dirname(path)
        while folder:
            counts[folder] += 1
            folder = posixpath.dirname(folder)
    if not total:
        return []
    candidates = {folder: count for folder, count in counts.items() if count * 20 >= total}
    dominated = set()
    for folder, count in candidates.items():
        parent = posixpath.dirname(folder)
        if parent in candidates and count * 10 >= candidates[parent] * 9:
            dominated.add(parent)
    chosen = [(folder, count) for folder, count in candidates.items() if folder not in dominated]
    chosen.sort(key=lambda fc: (-fc[1], fc[0]))
    return chosen[:_SHOWN]
