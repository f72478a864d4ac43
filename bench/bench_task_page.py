"""Rendering a task page with a large diff, against merely parsing the same diff with unidiff.

A synthetic git patch of --files files (default 200) and --lines changed lines (default 5,000: half
removed, half added, in hunks with context), a completed task record and --events timeline events
(default 500). Timed, best and median of --repeat runs: the whole page as `TaskPages` renders it
(parsing the patch, laying out side-by-side rows, escaping and joining the HTML). Baseline in the same
run: `unidiff.PatchSet` parsing the same patch, nothing else.

    .venv/bin/python -m bench.bench_task_page [--files 200] [--lines 5000] [--events 500] [--repeat 15]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

from unidiff import PatchSet

from runner.domain import models as m
from runner.web import render
from runner.web.diffview import files_of


def make_patch(files: int, lines: int) -> str:
    """Each file gets lines/files changed lines, in hunks of up to 10 (half removed, half added) between
    three lines of context on each side."""
    out = []
    for f in range(files):
        path = f"src/pkg{f % 10}/module_{f}.py"
        out.append(f"diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n")
        left = lines // files + (1 if f < lines % files else 0)
        h = 0
        while left > 0:
            size = min(10, left)
            removed, added = size - size // 2, size // 2
            start = 1 + h * 40
            out.append(f"@@ -{start},{6 + removed} +{start},{6 + added} @@\n")
            out.extend(f"     context_{h}_{c} = {c}\n" for c in "abc")
            out.extend(f"-    value_{h}_{i} = compute(x, {i})  # old\n" for i in range(removed))
            out.extend(f"+    value_{h}_{i} = compute(x, {i} + 1)  # new & <improved>\n" for i in range(added))
            out.extend(f"     tail_{h}_{c} = {c}\n" for c in "abc")
            left -= size
            h += 1
    return "".join(out)


def make_events(task_id: str, n: int) -> list[m.Event]:
    payloads: list[m.EventPayload] = []
    for i in range(n):
        k = i % 4
        if k == 0:
            payloads.append(m.ToolCallStarted(f"c{i}", "run_shell_command", f"pytest -q tests/test_{i}.py"))
        elif k == 1:
            payloads.append(m.ToolCallFinished(f"c{i}", "run_shell_command", True, 0, "ok\n" * 20, 0.2))
        elif k == 2:
            payloads.append(m.AssistantMessage(f"Step {i}: looking at the <code> next."))
        else:
            payloads.append(m.LogLine("agent", f"log line {i}"))
    return [m.Event(task_id, i + 1, 1_700_000_000 + i, p) for i, p in enumerate(payloads)]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return min(samples), statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    patch = make_patch(args.files, args.lines)
    changed = sum(1 for line in patch.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))
    record = m.TaskRecord(id="t0123456789abcdef", tenant="bench", instruction="Improve every module.",
                          model="bench", manifest_digest=m.EMPTY_DIGEST, state=m.TaskState.COMPLETED,
                          created_at=1_700_000_000, updated_at=1_700_000_600, files_changed=args.files,
                          artifacts=(m.ArtifactRef("diff.patch", m.Digest.of(patch.encode())),))
    events = make_events(record.id, args.events)

    def page() -> str:
        view = render.TaskPage(record, events, False, f"/tasks/{record.id}")
        view.files, view.diff_truncated = files_of(patch, 5000)
        return render.task_page(view)

    html = page()
    best, median = timed(page, args.repeat)
    base_best, base_median = timed(lambda: list(PatchSet(io.StringIO(patch))), args.repeat)
    print(f"diff: {args.files} files, {changed} changed lines, {len(patch):,} bytes; {args.events} events; "
          f"page {len(html):,} bytes")
    print(f"render the whole task page     best {best:7.1f} ms   median {median:7.1f} ms")
    print(f"baseline: unidiff parse only   best {base_best:7.1f} ms   median {base_median:7.1f} ms")
    print(f"ratio (median)                 {median / base_median:5.2f}x")


if __name__ == "__main__":
    main()
