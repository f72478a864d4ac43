"""Flags of `runner serve` and `worker` for Git and zip task sources; each has a `CODEX_SYS_*` variable.

The API checks sources when tasks are created and the worker fetches them, so give both processes the
same values. A flag wins over its variable; a wrong value names the flag or the variable. Described in
docs/sources.md.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from runner.sources.settings import SETTINGS, SourceSettings, parse

_HELP = {
    "allow_local": "allow file:// URLs and local paths as Git sources (they read this machine's disk)",
    "max_repo_bytes": "largest clone, objects and checkout (default 1024)",
    "clone_timeout_s": "seconds a clone may take (default 300)",
    "check_timeout_s": "seconds `git ls-remote` may take when a task is created (default 20)",
    "max_zip_bytes": "largest zip archive (default 512)",
    "max_unpacked_bytes": "largest total of a zip's entries unpacked (default 2048)",
    "max_ratio": "largest uncompressed/compressed ratio of an entry over 1 MiB (default 200)",
    "max_entries": "most entries in a zip (default 100000)",
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Git and zip task sources (see docs/sources.md; each flag has a "
                                      "CODEX_SYS_* variable)")
    for name, (variable, flag, _) in SETTINGS.items():
        if name == "allow_local":
            group.add_argument(flag, dest="git_allow_local", action="store_true", default=None,
                               help=f"{_HELP[name]} (env {variable}=1)")
        else:
            group.add_argument(flag, dest=_dest(flag), metavar="MB" if flag.endswith("-mb") else "N",
                               help=f"{_HELP[name]} (env {variable})")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def source_settings(args: argparse.Namespace) -> SourceSettings:
    """The variables' settings, with the flags given on top."""
    settings = SourceSettings.from_env()
    values: dict[str, Any] = {}
    for name, (_, flag, _) in SETTINGS.items():
        raw = getattr(args, "git_allow_local" if name == "allow_local" else _dest(flag), None)
        if raw is not None:
            values[name] = True if raw is True else parse(name, str(raw), f"{flag} {raw!r}")
    return replace(settings, **values)
