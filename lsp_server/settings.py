"""The server's settings: typed, layered, and forgiving.

Layers, later wins: the defaults, `CODEX_SYS_RUNNER`/`CODEX_SYS_TOKEN` from the environment, the client's
settings (its latest `workspace/didChangeConfiguration` `settings.codexSys`, which replace its
`initializationOptions`), and `workspace/configuration` for the task's folder (where the client supports
it); see `CodexServer.base_settings`. All use the shape of
docs/lsp.md. A value that is absent, null or an empty string does not override (VS Code reports its
defaults, empty strings, for settings nobody set). A value of the wrong type is a problem reported to the
user by name, and the value below it is kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_FILES", "Settings", "layer"]

DEFAULT_MAX_FILES = 100_000
DEFAULT_MAX_BYTES = 512 << 20


@dataclass(frozen=True)
class Settings:
    runner_address: str = ""  # empty: the embedded runner
    runner_token: str = ""
    model: str = ""
    exclude: tuple[str, ...] = ()
    max_files: int = DEFAULT_MAX_FILES
    max_bytes: int = DEFAULT_MAX_BYTES
    problems: tuple[str, ...] = field(default=(), compare=False)  # what was wrong in the last layer

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(runner_address=env.get("CODEX_SYS_RUNNER", ""), runner_token=env.get("CODEX_SYS_TOKEN", ""))


# (path in the settings object, field, type); ints must be positive.
_FIELDS: tuple[tuple[tuple[str, ...], str, type], ...] = (
    (("runner", "address"), "runner_address", str),
    (("runner", "token"), "runner_token", str),
    (("model",), "model", str),
    (("snapshot", "exclude"), "exclude", list),
    (("snapshot", "maxFiles"), "max_files", int),
    (("snapshot", "maxBytes"), "max_bytes", int),
)


def _lookup(raw: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = raw
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
        if value is None:
            # VS Code also hands over dotted keys flat ("runner.address") in some configurations.
            return raw.get(".".join(path)) if isinstance(raw, Mapping) else None
    return value


def layer(base: Settings, raw: object) -> Settings:
    """`base` with the values of `raw` (a `codexSys` settings object) laid over it; the result's
    `problems` name the settings that were wrong."""
    if raw is None or raw == []:  # Neovim's Lua encodes an empty table as []
        return replace(base, problems=())
    if not isinstance(raw, Mapping):
        return replace(base, problems=(f"codexSys settings must be an object, not {type(raw).__name__}",))
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for path, name, kind in _FIELDS:
        value = _lookup(raw, path)
        if value is None or value == "":
            continue
        setting = "codexSys." + ".".join(path)
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{setting} must be a positive whole number, not {value!r}")
                continue
        elif kind is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{setting} must be a list of patterns (strings), not {value!r}")
                continue
            value = tuple(value)
        elif not isinstance(value, str):
            problems.append(f"{setting} must be a string, not {type(value).__name__}")
            continue
        changes[name] = value
    return replace(base, **changes, problems=tuple(problems))
