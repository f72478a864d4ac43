"""The operator's settings for Git and zip task sources (flags and variables: `runner.cli.source_flags`).

Both the API (which checks a source when a task is created) and the worker (which fetches it) read them;
give both the same values. Sizes are in bytes here and in MiB on the command line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from runner.domain.errors import InvalidArgument

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class SourceSettings:
    # file:// URLs and local paths as Git sources: off, because they read the runner's own disk.
    allow_local: bool = False
    # A clone (objects and checkout together) larger than this is stopped.
    max_repo_bytes: int = 1024 * MiB
    # The zip archive itself, as uploaded.
    max_zip_bytes: int = 512 * MiB
    # All the archive's entries unpacked together, counted as the bytes are produced.
    max_unpacked_bytes: int = 2048 * MiB
    # Uncompressed size / compressed size of one entry (checked for entries over `ratio_floor_bytes`).
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 1 * MiB
    max_entries: int = 100_000
    # The whole clone (fetch and checkout).
    clone_timeout_s: float = 300.0
    # `git ls-remote` when a task is created: an unreachable host is refused at once.
    check_timeout_s: float = 20.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SourceSettings:
        """The settings from `CODEX_SYS_GIT_*` / `CODEX_SYS_ZIP_*` variables (see `runner.cli.source_flags`)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (variable, _, _) in SETTINGS.items():
            raw = env.get(variable, "").strip()
            if raw:
                values[name] = parse(name, raw, f"{variable}={raw!r}")
        return replace(cls(), **values)


# field -> (variable, flag, bytes per unit for sizes given in MiB; 0: not a size)
SETTINGS: Mapping[str, tuple[str, str, int]] = {
    "allow_local": ("CODEX_SYS_GIT_ALLOW_LOCAL", "--git-allow-local", 0),
    "max_repo_bytes": ("CODEX_SYS_GIT_MAX_REPO_MB", "--git-max-repo-mb", MiB),
    "clone_timeout_s": ("CODEX_SYS_GIT_CLONE_TIMEOUT", "--git-clone-timeout", 0),
    "check_timeout_s": ("CODEX_SYS_GIT_CHECK_TIMEOUT", "--git-check-timeout", 0),
    "max_zip_bytes": ("CODEX_SYS_ZIP_MAX_MB", "--zip-max-mb", MiB),
    "max_unpacked_bytes": ("CODEX_SYS_ZIP_MAX_UNPACKED_MB", "--zip-max-unpacked-mb", MiB),
    "max_ratio": ("CODEX_SYS_ZIP_MAX_RATIO", "--zip-max-ratio", 0),
    "max_entries": ("CODEX_SYS_ZIP_MAX_ENTRIES", "--zip-max-entries", 0),
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse(name: str, raw: str, what: str) -> Any:
    """One setting's value from text (a size in MiB comes back in bytes); `InvalidArgument` naming `what`
    when it does not fit."""
    if name == "allow_local":
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise InvalidArgument(f"{what} is not one of 1/0, true/false, yes/no, on/off")
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"{what} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{what} must be a positive number")
    if name in ("max_repo_bytes", "max_zip_bytes", "max_unpacked_bytes", "max_entries"):
        if value != int(value):
            raise InvalidArgument(f"{what} is not a whole number")
        return int(value) * (SETTINGS[name][2] or 1)
    if name == "max_ratio" and value < 1:
        raise InvalidArgument(f"{what} must be at least 1")
    return value
