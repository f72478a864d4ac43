"""The setup phase: setup.sh runs first, its output streamed and logged, failures stop the task."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from agent_testing import RecordingSink, wait_dead

from agent.setup_phase import run_setup
from agent.wire import LogEvent, PhaseEvent

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _log_lines(sink: RecordingSink) -> list[str]:
    return [e.text for e in sink.events if isinstance(e, LogEvent) and e.stream == "setup"]


def test_no_setup_script(ws: Path, out: Path, sink: RecordingSink) -> None:
    outcome = run_setup(ws, out, 10, sink)
    assert outcome.ok and not outcome.ran
    assert (out / "setup.log").read_text() == "No setup.sh in the workspace; setup skipped.\n"
    assert sink.events == []


def test_setup_runs_in_the_workspace_and_streams_lines(ws: Path, out: Path, sink: RecordingSink) -> None:
    (ws / "setup.sh").write_text(
        "echo installing\necho warning >&2\nmkdir -p deps && touch deps/x\nprintf 'no newline'\n")
    outcome = run_setup(ws, out, 10, sink)
    assert outcome.ok and outcome.ran
    assert (ws / "deps" / "x").exists()
    assert sink.events[0] == PhaseEvent("SETTING_UP")
    lines = _log_lines(sink)
    assert lines[:3] == ["installing", "warning", "no newline"]
    assert lines[3].startswith("setup.sh finished successfully in ")
    log = (out / "setup.log").read_text().splitlines()
    assert log[:3] == ["installing", "warning", "no newline"]
    assert log[3].startswith("setup.sh finished successfully in ")


def test_setup_failure_gives_the_status(ws: Path, out: Path, sink: RecordingSink) -> None:
    (ws / "setup.sh").write_text("echo trying\nexit 3\n")
    outcome = run_setup(ws, out, 10, sink)
    assert not outcome.ok
    assert outcome.reason == "setup.sh exited with status 3 (see setup.log)"
    log = (out / "setup.log").read_text()
    assert log.startswith("trying\nsetup.sh exited with status 3 after ")


def test_setup_timeout_kills_the_group(ws: Path, out: Path, sink: RecordingSink) -> None:
    (ws / "setup.sh").write_text("echo before\n(sleep 1000; echo orphan) &\necho $! > child.pid\nsleep 1000\n")
    started = time.monotonic()
    outcome = run_setup(ws, out, 0.5, sink)
    assert time.monotonic() - started < 5
    assert not outcome.ok
    assert outcome.reason == "setup.sh timed out after 0.5 s"
    log = (out / "setup.log").read_text()
    assert log == "before\nsetup.sh timed out after 0.5 s; it was killed with every process it started\n"
    assert wait_dead(int((ws / "child.pid").read_text())), "setup's background child survived"


def test_long_lines_are_cut_in_events_but_kept_in_the_log(ws: Path, out: Path, sink: RecordingSink) -> None:
    (ws / "setup.sh").write_text("head -c 10000 /dev/zero | tr '\\0' a; echo\n")
    assert run_setup(ws, out, 10, sink).ok
    first = _log_lines(sink)[0]
    assert len(first) < 4100 and first.endswith(" [...]")
    assert (out / "setup.log").read_text().startswith("a" * 10000 + "\n")


def test_setup_output_flood_is_capped(ws: Path, out: Path, sink: RecordingSink) -> None:
    (ws / "setup.sh").write_text("yes 'a fairly long line of setup output' | head -n 100000\n")
    assert run_setup(ws, out, 20, sink).ok
    lines = _log_lines(sink)
    assert "[setup output is no longer streamed; the rest is in setup.log]" in lines
    assert len(lines) < 40_000
    assert (out / "setup.log").read_text().count("\n") == 100_001
