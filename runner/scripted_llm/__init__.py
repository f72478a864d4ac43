"""A scripted OpenAI-compatible model server, shipped with the package.

Tests, benchmarks and the demo (when no provider is configured) use it in place of a real LLM provider.
It speaks the real Chat Completions wire protocol, streaming included, and answers from a `Scenario`::

    server = ScriptedLLMServer(Scenario.bundled("noop"))
    base_url = await server.start_tcp("127.0.0.1", 0)   # "http://127.0.0.1:PORT/v1"
    ...
    await server.close()

`python -m runner.scripted_llm --scenario FILE --port N` runs one from the command line.
"""

from runner.scripted_llm.main import serve
from runner.scripted_llm.scenario import (
    Scenario,
    ScenarioError,
    ScriptedToolCall,
    Step,
    StepError,
    bundled_names,
)
from runner.scripted_llm.server import RecordedRequest, ScriptedLLMServer

__all__ = [
    "RecordedRequest",
    "Scenario",
    "ScenarioError",
    "ScriptedLLMServer",
    "ScriptedToolCall",
    "Step",
    "StepError",
    "bundled_names",
    "serve",
]
