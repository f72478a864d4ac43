"""Zip archives for the tests, hostile ones included, made with `zipfile` and patched byte by byte where
`zipfile` refuses to write what an attacker would (flags, names, CRCs, sizes)."""

from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile
from collections.abc import Iterable

LOCAL = b"PK\x03\x04"
CENTRAL = b"PK\x01\x02"


def entry(name: str, data: bytes = b"", *, mode: int = 0o644, kind: int = stat.S_IFREG,
          method: int = zipfile.ZIP_DEFLATED) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = (kind | mode) << 16
    if name.endswith("/"):
        info.external_attr |= 0x10
    info.compress_type = method
    return info, data


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    return entry(name, target.encode(), mode=0o777, kind=stat.S_IFLNK, method=zipfile.ZIP_STORED)


def build(entries: Iterable[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are what some tests want
        with zipfile.ZipFile(buf, "w") as z:
            for info, data in entries:
                z.writestr(info, data)
    return buf.getvalue()


def _headers(data: bytes, name: bytes) -> list[tuple[int, bool]]:
    """Offsets of the local (False) and central (True) headers of the entry named `name`."""
    found = []
    for sig, central, name_at, len_at in ((LOCAL, False, 30, 26), (CENTRAL, True, 46, 28)):
        at = data.find(sig)
        while at >= 0:
            (length,) = struct.unpack_from("<H", data, at + len_at)
            if data[at + name_at: at + name_at + length] == name:
                found.append((at, central))
            at = data.find(sig, at + 4)
    assert found, f"no header for {name!r}"
    return found


def patch(data: bytes, name: bytes, *, set_flags: int = 0, clear_flags: int = 0, new_name: bytes | None = None,
          crc_xor: int = 0, file_size: int | None = None) -> bytes:
    """Change an entry's flags, name (same length), CRC or stated uncompressed size in both headers."""
    out = bytearray(data)
    for at, central in _headers(data, name):
        flag_at, crc_at, size_at, name_at = (at + 8, at + 16, at + 24, at + 46) if central else (
            at + 6, at + 14, at + 22, at + 30)
        (flags,) = struct.unpack_from("<H", out, flag_at)
        struct.pack_into("<H", out, flag_at, (flags | set_flags) & ~clear_flags)
        if crc_xor:
            (crc,) = struct.unpack_from("<I", out, crc_at)
            struct.pack_into("<I", out, crc_at, crc ^ crc_xor)
        if file_size is not None:
            struct.pack_into("<I", out, size_at, file_size)
        if new_name is not None:
            assert len(new_name) == len(name)
            out[name_at:name_at + len(name)] = new_name
    return bytes(out)
