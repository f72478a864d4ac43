"""Where the runner keeps its state, and the settings read from the environment.

`CODEX_SYS_HOME` (default `~/.codex-sys`) holds everything of the embedded runner:

    runner.sock     gRPC API (unix socket, 0600)      gateway.sock   the agents' one channel out
    state.db        tasks, events, queue (SQLite)     blobs/         content-addressed store
    sandboxes/      per-sandbox workspace and output  transcripts/   LLM transcripts while tasks run
    runner.log      the embedded runner's log         cache/         the CLI's digest cache
    share.key       signs task pages' share links     web-token      signs a browser in to the task pages
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from runner.domain.errors import InvalidArgument


def codex_home() -> Path:
    return Path(os.environ.get("CODEX_SYS_HOME") or Path.home() / ".codex-sys").expanduser()


@dataclass(frozen=True, slots=True)
class HomeLayout:
    root: Path

    @property
    def runner_socket(self) -> Path:
        return self.root / "runner.sock"

    @property
    def gateway_socket(self) -> Path:
        return self.root / "gateway.sock"

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def sandboxes(self) -> Path:
        return self.root / "sandboxes"

    @property
    def transcripts(self) -> Path:
        return self.root / "transcripts"

    @property
    def log_file(self) -> Path:
        return self.root / "runner.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "runner.pid"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def share_key(self) -> Path:
        """The key that signs task pages' share links (0600; see runner.web.share)."""
        return self.root / "share.key"

    @property
    def web_token(self) -> Path:
        """The embedded runner's token for signing a browser in to the task pages (0600)."""
        return self.root / "web-token"

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        for folder in (self.blobs, self.sandboxes, self.transcripts, self.cache):
            folder.mkdir(exist_ok=True, mode=0o700)


@dataclass(frozen=True, slots=True)
class LLMSettings:
    """Read by the runner only; never passed into a sandbox."""

    base_url: str | None
    api_key: str | None
    model: str

    @classmethod
    def from_env(cls) -> LLMSettings:
        return cls(
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            api_key=os.environ.get("OPENAI_API_KEY") or None,
            model=os.environ.get("CODEX_SYS_MODEL") or "gpt-4.1",
        )


def env_number(name: str, default: float, *, allow_zero: bool = False) -> float:
    """A positive number (or 0, with `allow_zero`) from the environment; `default` when unset. A bad value
    is an `InvalidArgument` naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgument(f"{name}={raw!r} must be {'zero or more' if allow_zero else 'positive'}")
    return value


def env_whole(name: str, default: int, *, allow_zero: bool = False) -> int:
    """Like `env_number`, for a whole number."""
    raw = os.environ.get(name, "").strip()
    if raw and not raw.isdigit():
        raise InvalidArgument(f"{name}={raw!r} is not a whole number")
    return int(env_number(name, default, allow_zero=allow_zero))
