"""Fixtures: the real `codex-sys lsp` process driven by a scripted editor (`editor.Editor`) over stdio,
with the real embedded runner it starts (gRPC, bubblewrap sandboxes) under a private home, and the
scripted OpenAI-compatible provider behind the runner's gateway."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import CODEX, Provider, codex_env, provider_factory
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from .editor import Editor, capabilities, structure_code_actions

__all__ = ["provider_factory"]  # a fixture used from here

pytestmark = pytest.mark.e2e


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
async def lsp_factory(short_tmp: Path, provider_factory: Any) -> AsyncIterator[Any]:
    started: list[tuple[LanguageClient, dict[str, str]]] = []

    async def start(flavor: str, scenario: dict[str, Any] | None, folders: list[Path],
                    init_options: Any = None, configuration: dict[str, Any] | None = None,
                    provider: Provider | None = None, env_extra: dict[str, str] | None = None) -> Editor:
        if provider is None:
            provider = await provider_factory(scenario or {"name": "noop"})
        home = short_tmp / f"h{len(started)}"
        env = {**codex_env(home, provider), **(env_extra or {})}
        client = await ClientServerConfig(server_command=[CODEX, "lsp"], server_env=env).start()
        started.append((client, env))
        editor = Editor(client, flavor, folders[0])
        editor.home = home  # type: ignore[attr-defined]
        editor.env = env  # type: ignore[attr-defined]

        @client.feature(lsp.WORKSPACE_APPLY_EDIT)
        def on_apply_edit(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
            return editor.apply_edit(params)

        structure_code_actions(client)
        if configuration is not None:
            client.set_configuration(configuration, section="codexSys")
        await client.initialize_session(lsp.InitializeParams(
            capabilities=capabilities(flavor), root_uri=editor.uri("", folders[0]).rstrip("/"),
            workspace_folders=[lsp.WorkspaceFolder(uri=editor.uri("", f).rstrip("/"), name=f.name) for f in folders],
            initialization_options=init_options))
        return editor

    yield start
    for client, env in started:
        try:
            await asyncio.wait_for(client.shutdown_session(), 20)
        finally:
            await client.stop()
        await asyncio.to_thread(subprocess.run, [CODEX, "runner", "stop"], env=env, capture_output=True, timeout=30)
