"""`codex-sys lsp`: the language server over stdio.

stdout carries LSP only; logs go to stderr (the editor's log of the server) as JSON lines.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from lsp_server.handlers import make_server

__all__ = ["serve_stdio"]

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return version("codex-sys")
    except PackageNotFoundError:
        return "0"


def serve_stdio() -> int:
    server = make_server(_version())
    log.info("language server starting", extra={"version": server.version})
    server.start_io()
    return 0
