"""The VS Code extension as built (its bundle, the real vscode-languageclient) against the real
`codex-sys lsp` and an embedded runner: `npm run smoke` in editors/vscode (see docs/vscode.md). VS Code
itself cannot be had here; the `vscode` module is the extension's test double, the rest is real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXT = REPO / "editors" / "vscode"

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(240)
def test_the_extension_drives_the_real_server() -> None:
    assert (EXT / "node_modules").is_dir(), "editors/vscode/node_modules is missing: run `make vscode` first"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_SYS_"))}
    proc = subprocess.run(["npm", "run", "--silent", "smoke", "--", str(Path(sys.executable).parent / "codex-sys")],
                          cwd=EXT, env=env, capture_output=True, text=True, timeout=220, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "smoke: passed" in out, out[-4000:]
    for step in ("task ended after", "Show Diff opened", "a refused command gives one message",
                 "Cancel in the notification", "the server restarted"):
        assert step in out, f"missing {step!r}:\n{out[-4000:]}"
