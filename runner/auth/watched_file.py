"""A settings file that is re-read when it changes: the token file and the tenants (quotas) file.

`current()` stats the file at most once per `interval_s` (one `stat` call, microseconds, fine on the
event loop) and parses it again only when its inode, size or modification time changed. The file is
read and parsed in full at start (errors there stop the start); later, a file that no longer parses or
has gone away leaves the previous value in force and is reported once in the log: what is wrong and
where (the parser's message), never the file's contents.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from runner.domain.errors import InvalidArgument

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_FILE_BYTES = 4 << 20


def read_text(path: Path, what: str) -> str:
    """The file as text, with errors that name it (and never quote it)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidArgument(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise InvalidArgument(f"the {what} {path} is larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"the {what} {path} is not UTF-8 text (byte {exc.start})") from exc


def _key(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


class WatchedFile(Generic[T]):
    def __init__(self, path: Path, parse: Callable[[Path], T], what: str, interval_s: float = 1.0) -> None:
        self.path = path
        self._parse = parse
        self._what = what
        self._interval = interval_s
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = _key(path) if path.exists() else None
        self._value = parse(path)
        self._checked_at = time.monotonic()

    def current(self, force: bool = False) -> T:
        now = time.monotonic()
        if force or now - self._checked_at >= self._interval:
            with self._lock:
                self._checked_at = now
                self._reload()
        return self._value

    def _reload(self) -> None:
        try:
            key = _key(self.path)
        except OSError as exc:
            if self._key is not None:
                log.error(f"{self._what} unreadable; keeping what was loaded before",
                          extra={"path": str(self.path), "error": exc.strerror or str(exc)})
                self._key = None
            return
        if key == self._key:
            return
        self._key = key
        try:
            self._value = self._parse(self.path)
        except InvalidArgument as exc:
            log.error(f"{self._what} not reloaded; keeping what was loaded before",
                      extra={"path": str(self.path), "error": str(exc)})
            return
        log.info(f"{self._what} reloaded", extra={"path": str(self.path)})
