"""Writing a snapshot's entries into a folder without ever following a symlink.

Shared by the local executor's `materialize` and the pack unpacker. Folders are created and opened
through folder descriptors with `O_NOFOLLOW`, files with `O_EXCL | O_NOFOLLOW` relative to them, so no
entry can be written through a symlink, even one the snapshot itself made, and no existing file is
replaced. Modes are exact whatever the umask: 0755 for folders and executables, 0644 for other files.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from runner.domain.models import FileKind, ManifestEntry

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def file_mode(entry: ManifestEntry) -> int:
    return 0o755 if entry.kind is FileKind.EXECUTABLE else 0o644


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Folders:
    """Open folder descriptors under the root, created on first use. Not thread-safe: make every
    folder (`make_all`) before threads start, which then only read the map."""

    def __init__(self, root: Path) -> None:
        self._fds: dict[str, int] = {"": os.open(root, DIR_FLAGS)}

    def fd(self, rel: str) -> int:
        found = self._fds.get(rel)
        if found is not None:
            return found
        parent = self.fd(posixpath.dirname(rel))
        name = posixpath.basename(rel)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)  # ELOOP/ENOTDIR if a file or symlink is there
        os.fchmod(fd, 0o755)
        self._fds[rel] = fd
        return fd

    def parent_and_name(self, path: str) -> tuple[int, str]:
        return self.fd(posixpath.dirname(path)), posixpath.basename(path)

    def make_all(self, entries: Sequence[ManifestEntry]) -> None:
        for entry in entries:
            self.fd(posixpath.dirname(entry.path))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
