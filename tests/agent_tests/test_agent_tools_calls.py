"""Tool calls as they arrive from the model: schemas, malformed calls, summaries, shell results."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from agent_testing import call, make_toolbox

from agent.baseline import ShadowRepo
from agent.tools import TOOL_NAMES, TOOL_SCHEMAS, Toolbox, describe_call, truncate_middle

pytestmark = pytest.mark.timeout(20)

REQUIRED = {
    "run_shell_command": ["command_string"],
    "read_file_content": ["file_path"],
    "write_file_content": ["file_path", "content"],
    "edit_file_content": ["file_path", "old_string", "new_string"],
    "list_directory": [],
    "search_files": ["pattern"],
}


def test_schemas_have_the_contract_names_and_required_arguments() -> None:
    assert tuple(REQUIRED) == TOOL_NAMES
    for schema in TOOL_SCHEMAS:
        assert schema["type"] == "function"
        function = schema["function"]
        assert function["parameters"]["required"] == REQUIRED[function["name"]]
        assert function["parameters"]["additionalProperties"] is False
        assert function["description"]
    shell = TOOL_SCHEMAS[0]["function"]["parameters"]["properties"]
    assert shell["target_directory"]["default"] == "."
    read = TOOL_SCHEMAS[1]["function"]["parameters"]["properties"]
    assert read["offset"]["type"] == read["limit"]["type"] == "integer"
    json.dumps(TOOL_SCHEMAS)  # plain JSON, ready for the request body


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("read_file_content", "{oops not json", "Error: the arguments of read_file_content are not valid JSON"),
    ("read_file_content", "[1, 2]", "Error: the arguments of read_file_content must be a JSON object, not list"),
    ("read_file_content", "{}", "Error: read_file_content needs the argument(s) file_path"),
    ("edit_file_content", '{"file_path": "a"}', "needs the argument(s) old_string, new_string"),
    ("read_file_content", '{"file_path": 7}', "Error: read_file_content: file_path must be a string, got int"),
    ("read_file_content", '{"file_path": "a", "offset": "ten"}', "offset must be an integer, got \"ten\""),
    ("read_file_content", '{"file_path": "a", "offset": true}', "offset must be an integer, got true"),
    ("read_file_content", '{"file_path": "a", "colour": "red"}',
     "read_file_content has no argument(s) colour; it takes: file_path, offset, limit"),
    ("delete_everything", "{}", "Error: there is no tool named 'delete_everything'; the tools are: run_shell_command"),
    ("", "{}", "Error: there is no tool named ''"),
])
def test_malformed_calls_become_error_results(toolbox: Toolbox, name: str, raw: str, message: str) -> None:
    result = toolbox.execute(name, raw)
    assert not result.ok
    assert result.exit_code is None
    assert message in result.output


def test_lenient_about_null_optionals_and_quoted_integers(ws: Path, toolbox: Toolbox) -> None:
    (ws / "a.txt").write_text("1\n2\n3\n")
    result = toolbox.execute("read_file_content", '{"file_path": "a.txt", "offset": "2", "limit": null}')
    assert result.ok
    assert result.output == "     2\t2\n     3\t3"
    assert toolbox.execute("list_directory", "").ok  # no arguments at all: the defaults


def test_describe_call_summaries() -> None:
    assert describe_call("run_shell_command", '{"command_string": "pytest -q", "target_directory": "src"}') \
        == "pytest -q  (in src)"
    assert describe_call("run_shell_command", json.dumps({"command_string": "echo a\necho b"})) == "echo a echo b"
    assert describe_call("read_file_content", '{"file_path": "a.py", "offset": 10}') \
        == "a.py [offset=10, limit=default]"
    assert describe_call("write_file_content", '{"file_path": "a.py", "content": "abc"}') == "a.py (3 characters)"
    assert describe_call("edit_file_content", '{"file_path": "a.py", "old_string": "x", "new_string": "y"}') == "a.py"
    assert describe_call("search_files", '{"pattern": "TODO"}') == "'TODO' in ."
    assert describe_call("whatever", "{broken") == "{broken"
    long = describe_call("run_shell_command", json.dumps({"command_string": "x" * 500}))
    assert len(long) == 200 and long.endswith("…")


def test_truncate_middle_keeps_both_ends() -> None:
    text = "HEAD" + "m" * 10_000 + "TAIL"
    cut = truncate_middle(text, 1000)
    assert len(cut) <= 1000
    assert cut.startswith("HEAD") and cut.endswith("TAIL")
    assert "characters omitted" in cut
    assert truncate_middle("short", 1000) == "short"


# ---- run_shell_command --------------------------------------------------------------------------------


def test_shell_reports_exit_code_stdout_and_stderr(toolbox: Toolbox) -> None:
    result = call(toolbox, "run_shell_command", command_string="echo hi; echo oops >&2; exit 4")
    assert not result.ok
    assert result.exit_code == 4
    assert result.output == "exit code: 4\nstdout:\nhi\nstderr:\noops"


def test_shell_runs_in_the_workspace_or_the_target_directory(ws: Path, toolbox: Toolbox) -> None:
    (ws / "sub").mkdir()
    assert call(toolbox, "run_shell_command", command_string="pwd").output == f"exit code: 0\nstdout:\n{ws}"
    result = call(toolbox, "run_shell_command", command_string="pwd", target_directory="sub")
    assert result.output == f"exit code: 0\nstdout:\n{ws / 'sub'}"
    missing = call(toolbox, "run_shell_command", command_string="pwd", target_directory="nope")
    assert not missing.ok and "is not an existing directory" in missing.output


def test_shell_without_output(toolbox: Toolbox) -> None:
    assert call(toolbox, "run_shell_command", command_string="true").output == "exit code: 0\n(no output)"


def test_shell_output_is_cut_to_the_limit_keeping_stderr(ws: Path, repo: ShadowRepo) -> None:
    box = make_toolbox(ws, repo, limit=2000)
    result = call(box, "run_shell_command",
                  command_string="seq 1 100000; echo 'the real error' >&2; exit 1")
    assert len(result.output) <= 2000
    assert result.output.startswith("exit code: 1\nstdout:\n1\n2\n3\n")
    assert "100000\nstderr:\nthe real error" in result.output
    assert "characters omitted" in result.output or "bytes of output dropped" in result.output


def test_shell_killed_by_a_signal(toolbox: Toolbox) -> None:
    result = call(toolbox, "run_shell_command", command_string="kill -TERM $$")
    assert not result.ok
    assert result.output.startswith("killed by signal 15")


def test_shell_does_not_hang_on_background_processes(ws: Path, toolbox: Toolbox) -> None:
    result = call(toolbox, "run_shell_command", command_string="sleep 30 & echo $! > bg.pid; echo started")
    os.kill(int((ws / "bg.pid").read_text()), signal.SIGKILL)
    assert result.ok
    assert "started" in result.output
    assert "background processes running" in result.output
