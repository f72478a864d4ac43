"""AGENTS.md discovery and the system prompt built from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.baseline import ShadowRepo
from agent.instructions import (
    MAX_AGENTS_FILE_CHARS,
    AgentsFile,
    discover_agents_files,
    render_prompt_file,
    system_prompt,
)
from agent.paths import Workspace
from agent.tools import TOOL_NAMES

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def project(ws: Path) -> Path:
    (ws / "AGENTS.md").write_text("Use tabs.\n")
    (ws / "src" / "api").mkdir(parents=True)
    (ws / "src" / "AGENTS.md").write_text("Use spaces in src.\n")
    (ws / "src" / "api" / "AGENTS.md").write_text("API handlers return JSON.\n")
    (ws / "docs").mkdir()
    (ws / "docs" / "AGENTS.md").write_text("Docs in British English.\n")
    (ws / ".gitignore").write_text("vendor/\n")
    (ws / "vendor" / "lib").mkdir(parents=True)
    (ws / "vendor" / "lib" / "AGENTS.md").write_text("IGNORED VENDOR RULES\n")
    (ws / ".git").mkdir()
    (ws / ".git" / "AGENTS.md").write_text("GIT DIR RULES\n")
    (ws / "notes").mkdir()
    (ws / "notes" / "agents.md").write_text("wrong case, not an AGENTS.md\n")
    return ws


def test_discovers_every_agents_file_shallowest_first(project: Path, repo: ShadowRepo) -> None:
    found = discover_agents_files(Workspace(project), repo.list_files)
    assert [f.path for f in found] == ["AGENTS.md", "docs/AGENTS.md", "src/AGENTS.md", "src/api/AGENTS.md"]
    assert found[0].text == "Use tabs.\n"
    assert [f.scope for f in found] == [
        "applies to the whole workspace",
        "applies to files under docs/",
        "applies to files under src/",
        "applies to files under src/api/",
    ]


def test_discovery_while_the_baseline_is_being_recorded(project: Path, repo: ShadowRepo) -> None:
    repo.record_baseline()  # afterwards the files are tracked rather than untracked: still found
    found = discover_agents_files(Workspace(project), repo.list_files)
    assert len(found) == 4


def test_agents_file_linking_outside_is_skipped(ws: Path, repo: ShadowRepo) -> None:
    secret = ws.parent / "secret.txt"
    secret.write_text("SECRET\n")
    (ws / "sub").mkdir()
    os.symlink(secret, ws / "sub" / "AGENTS.md")
    assert discover_agents_files(Workspace(ws), repo.list_files) == []


def test_long_agents_file_is_cut(ws: Path, repo: ShadowRepo) -> None:
    (ws / "AGENTS.md").write_text("x" * (MAX_AGENTS_FILE_CHARS + 500))
    [found] = discover_agents_files(Workspace(ws), repo.list_files)
    assert len(found.text) < MAX_AGENTS_FILE_CHARS + 100
    assert found.text.endswith("[... AGENTS.md is longer; the rest was left out ...]")


def test_prompt_states_scopes_and_that_the_nearest_wins(project: Path, repo: ShadowRepo) -> None:
    found = discover_agents_files(Workspace(project), repo.list_files)
    prompt = system_prompt(workspace_root="/workspace", tool_names=TOOL_NAMES, agents_files=found)
    assert "The workspace root is /workspace." in prompt
    for name in TOOL_NAMES:
        assert f"- {name}\n" in prompt or prompt.endswith(f"- {name}")
    assert "the more deeply nested AGENTS.md (the one nearest to the file) takes precedence" in prompt
    assert "## AGENTS.md (applies to the whole workspace)\n\nUse tabs." in prompt
    assert "## src/api/AGENTS.md (applies to files under src/api/)\n\nAPI handlers return JSON." in prompt
    # Root first, nested later, in the order found.
    assert prompt.index("Use tabs.") < prompt.index("Use spaces in src.") < prompt.index("API handlers")
    assert "IGNORED VENDOR RULES" not in prompt and "GIT DIR RULES" not in prompt


def test_prompt_without_agents_files_or_focus(repo: ShadowRepo) -> None:
    prompt = system_prompt(workspace_root="/workspace", tool_names=TOOL_NAMES, agents_files=[])
    assert "AGENTS.md" not in prompt
    assert "Where the user is looking" not in prompt


def test_prompt_includes_the_focus() -> None:
    prompt = system_prompt(workspace_root="/w", tool_names=TOOL_NAMES, agents_files=[AgentsFile("AGENTS.md", "r")],
                           focus_paths=("src/a.py", "src/b.py"), focus_range="src/a.py:10-20")
    assert "The user pointed at these files: src/a.py, src/b.py." in prompt
    assert "The user selected src/a.py:10-20 (path:first_line-last_line)." in prompt


def test_prompt_file_holds_both_messages_verbatim() -> None:
    text = render_prompt_file("SYSTEM\nPROMPT", "Fix the bug\nplease")
    assert text == "=== system ===\nSYSTEM\nPROMPT\n=== user ===\nFix the bug\nplease\n"
