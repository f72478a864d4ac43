"""Scenario documents: strict validation with errors that name the place, and the bundled files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.scripted_llm import Scenario, ScenarioError, bundled_names

pytestmark = pytest.mark.timeout(10)


def test_full_document_round_trip() -> None:
    scenario = Scenario.from_dict({
        "name": "s",
        "steps": [
            {"content": "looking", "tool_calls": [{"name": "run_shell_command",
                                                   "arguments": {"command_string": "ls"}}],
             "expect_in_prompt": ["fix it"], "delay_s": 0.5},
            {"tool_calls": [{"name": "edit_file_content", "raw_arguments": "{not json"}]},
            {"error": {"status": 503, "message": "overloaded", "times": 2}, "content": "after the errors"},
            {"error": {"status": 500}},
        ],
        "final": "bye",
        "stream_chunk_chars": 3,
    })
    assert scenario.name == "s"
    assert scenario.final == "bye"
    assert scenario.stream_chunk_chars == 3
    first = scenario.steps[0]
    assert json.loads(first.tool_calls[0].arguments_text) == {"command_string": "ls"}
    assert first.expect_in_prompt == ("fix it",)
    assert first.delay_s == 0.5
    assert scenario.steps[1].tool_calls[0].arguments_text == "{not json"
    assert scenario.steps[2].error is not None and scenario.steps[2].error.times == 2
    assert scenario.steps[3].error is not None and scenario.steps[3].error.message == "scripted error 500"
    assert scenario.step(4) is None


@pytest.mark.parametrize(("doc", "fragment"), [
    ([], "scenario: expected a JSON object, got list"),
    ({"steps": []}, "missing field(s) ['name']"),
    ({"name": "x", "stepz": []}, "unknown field(s) ['stepz']"),
    ({"name": ""}, "name: must not be empty"),
    ({"name": "x", "steps": {}}, "steps: expected a list"),
    ({"name": "x", "steps": [{}]}, "steps[0]: a step needs content or tool_calls"),
    ({"name": "x", "steps": [{"content": 3}]}, "steps[0].content: expected a string, got int"),
    ({"name": "x", "steps": [{"tool_calls": [{"arguments": {}}]}]},
     "steps[0].tool_calls[0]: missing field(s) ['name']"),
    ({"name": "x", "steps": [{"tool_calls": [{"name": "f", "arguments": "ls"}]}]},
     "steps[0].tool_calls[0].arguments: expected a JSON object, got str"),
    ({"name": "x", "steps": [{"tool_calls": [{"name": "f", "arguments": {}, "raw_arguments": ""}]}]},
     "either arguments or raw_arguments"),
    ({"name": "x", "steps": [{"content": "", "delay_s": -1}]}, "steps[0].delay_s: expected a non-negative"),
    ({"name": "x", "steps": [{"content": "", "error": {"status": 200}}]}, "steps[0].error.status"),
    ({"name": "x", "steps": [{"error": {"status": 500, "times": 1}}]}, "a step needs content or tool_calls"),
    ({"name": "x", "steps": [{"content": "", "expect_in_prompt": "AGENTS"}]}, "expect_in_prompt: expected a list"),
    ({"name": "x", "stream_chunk_chars": 0}, "stream_chunk_chars: expected a positive integer"),
    ({"name": "x", "report_usage": "no"}, "report_usage: expected true or false"),
])
def test_invalid_documents_are_refused_naming_the_place(doc: object, fragment: str) -> None:
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(doc)
    assert fragment in str(info.value)


def test_load_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "steps": [{"content": 1}]}')
    with pytest.raises(ScenarioError, match=r"bad\.json: steps\[0\]\.content"):
        Scenario.load(bad)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        Scenario.load(tmp_path / "broken.json")
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        Scenario.load(tmp_path / "missing.json")


def test_bundled_scenarios_are_valid() -> None:
    assert "noop" in bundled_names()
    for name in bundled_names():
        assert Scenario.bundled(name).name == name
    noop = Scenario.bundled("noop")
    assert noop.steps == ()
    assert noop.final
    with pytest.raises(ScenarioError, match="no bundled scenario"):
        Scenario.bundled("does-not-exist")
