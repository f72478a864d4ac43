"""Fixtures of the Neovim tests: a short private folder, editors that are always closed, and the real
`codex-sys lsp` behind them with a private CODEX_SYS_HOME and a scripted provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nvim_harness import CODEX, PROVIDER_KEY, Editor, ThreadedProvider, base_env

from runner.client.embedded import stop_embedded_runner
from runner.config import HomeLayout
from runner.scripted_llm import Scenario


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(scenario): the scripted model's Scenario for the `session` fixture")


@pytest.fixture
def provider_factory() -> Iterator[Callable[..., ThreadedProvider]]:
    made: list[ThreadedProvider] = []

    def make(scenario: Scenario | dict[str, Any]) -> ThreadedProvider:
        if isinstance(scenario, dict):
            scenario = Scenario.from_dict(scenario)
        provider = ThreadedProvider({}, default=scenario)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


class CodexEnv:
    """The environment of `codex-sys lsp` (and of the embedded runner it starts): a private home and the
    scripted provider."""

    def __init__(self, home: Path, provider: ThreadedProvider) -> None:
        self.home = home
        self.provider = provider
        self.vars = {
            "CODEX_SYS_HOME": str(home), "OPENAI_BASE_URL": provider.base_url, "OPENAI_API_KEY": PROVIDER_KEY,
            "CODEX_SYS_MODEL": "scripted-nvim", "CODEX_SYS_WARM_POOL": "1", "CODEX_SYS_LOG_LEVEL": "INFO",
        }

    def runner_log(self) -> str:
        path = self.home / "runner.log"
        return "runner.log (tail):\n" + (path.read_text(errors="replace")[-5000:] if path.exists() else "(none)")

    def stop_runner(self) -> None:
        """Stops the embedded runner the server started under this home, if it did (`codex-sys runner stop`,
        without a process of its own)."""
        asyncio.run(stop_embedded_runner(HomeLayout(self.home)))


@pytest.fixture
def codex_factory(short_tmp: Path) -> Iterator[Callable[[ThreadedProvider], CodexEnv]]:
    made: list[CodexEnv] = []

    def make(provider: ThreadedProvider) -> CodexEnv:
        codex = CodexEnv(short_tmp / f"home{len(made)}", provider)
        made.append(codex)
        return codex

    yield make
    for codex in made:
        codex.stop_runner()


@pytest.fixture
def editor_factory(short_tmp: Path, provider_factory: Any, codex_factory: Any) -> Iterator[Callable[..., Editor]]:
    # Requests the other factories so that editors (and their language servers) close first, then the
    # runners stop, then the providers.
    made: list[Editor] = []

    def make(extra_env: dict[str, str] | None = None, cwd: Path | None = None) -> Editor:
        folder = short_tmp / f"nvim{len(made)}"
        folder.mkdir()
        editor = Editor(folder, base_env(folder) | (extra_env or {}), cwd or short_tmp)
        made.append(editor)
        return editor

    yield make
    for editor in made:
        editor.close()


@pytest.fixture
def codex_editor(editor_factory: Any, provider_factory: Any, codex_factory: Any) -> Callable[..., Editor]:
    """Makes an editor whose plugin runs the real `codex-sys lsp`: its embedded runner starts on demand
    under a private home and asks a scripted provider following `scenario` (`editor.provider`).
    `setup_options` go to the plugin's setup() (the server's cmd is given unless they name one); with
    `plugin=False` the plugin is not set up."""

    def make(scenario: Scenario | dict[str, Any], cwd: Path | None = None, plugin: bool = True,
             **setup_options: Any) -> Editor:
        provider = provider_factory(scenario)
        codex = codex_factory(provider)
        editor = editor_factory(extra_env=codex.vars, cwd=cwd)
        editor.provider = provider
        editor.extra_logs.append(codex.runner_log)
        editor.setup_base = {"cmd": [CODEX, "lsp"]}
        if plugin:
            editor.setup(**setup_options)
        return editor

    return make
