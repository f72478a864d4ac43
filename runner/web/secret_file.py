"""Secrets the web side keeps in files: the share-link key and the embedded runner's local web token.

Each is 32 random bytes written as hex. When the runner may create it (a file under CODEX_SYS_HOME), it is
made once with O_EXCL and mode 0600, so two processes starting at once agree on one value; a file other
users can read is refused rather than used.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from runner.domain.errors import InvalidArgument

SECRET_BYTES = 32


def load_secret(path: Path, what: str, *, create: bool) -> str:
    """The hex secret in `path` (64+ hex digits); with `create`, made first if missing."""
    if create and not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(SECRET_BYTES) + "\n")
    try:
        text = path.read_text().strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise InvalidArgument(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise InvalidArgument(f"the {what} file {path} is readable by other users; chmod 600 it")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) < SECRET_BYTES:
        raise InvalidArgument(f"the {what} file {path} must hold {SECRET_BYTES * 2} or more hex digits")
    return text
