"""The gateway's unix socket: private from the first instant, and a stale one replaced safely.

The socket is bound under a temporary name in the target folder, given mode 0600, and only then renamed
onto the final path, so there is no moment at which the path answers with looser permissions and no
need to touch the process-wide umask. What already sits at the path is replaced only if it is a socket
nobody answers on (left by a process that died); a live socket or anything that is not a socket is an
error, never silently clobbered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from runner.domain.errors import FailedPrecondition, InvalidArgument

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


@dataclass(frozen=True, slots=True)
class BoundSocket:
    sock: socket.socket
    path: Path
    inode: int

    def unlink_if_ours(self) -> None:
        """Remove the socket file unless someone has replaced it meanwhile."""
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(self.path).st_ino == self.inode:
                self.path.unlink()


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def bind_private_socket(path: Path, backlog: int = 128) -> BoundSocket:
    temporary = path.with_name(f".{secrets.token_hex(4)}.sock")
    if max(len(os.fsencode(path)), len(os.fsencode(temporary))) > MAX_SOCKET_PATH_BYTES:
        raise InvalidArgument(f"unix socket path {path} is longer than {MAX_SOCKET_PATH_BYTES} bytes; "
                              "choose a shorter folder (CODEX_SYS_HOME)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FailedPrecondition(f"{path} exists and is not a socket; refusing to replace it")
        if await _answers(path):
            raise FailedPrecondition(f"another process is already serving on {path}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(str(temporary))
        except OSError as exc:
            raise FailedPrecondition(f"cannot create the socket {path}: {exc.strerror or exc}") from exc
        try:
            os.chmod(temporary, 0o600)
            inode = os.lstat(temporary).st_ino
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return BoundSocket(sock, path, inode)
