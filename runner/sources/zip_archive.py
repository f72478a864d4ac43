"""Zip archives as task sources: checked from their central directory, then unpacked without trusting it.

`plan` reads the central directory (cheap: the API does it when a task is created, so a hostile archive
is refused before anything is queued) and refuses, naming the entry and the rule:

* paths that leave the tree: a `..` segment (zip-slip), an absolute path, a backslash or a drive letter;
* names that are not UTF-8: without the archive's UTF-8 flag (bit 11) a name must be ASCII (the legacy
  code page cannot be told reliably, and a misread name is a different file); the name's raw bytes are
  shown;
* encrypted entries (flag bit 0), compression methods other than stored, deflate, bzip2 and LZMA, and
  entries that are neither files, folders nor symbolic links (devices, FIFOs);
* the same path twice (after the top folder is stripped), or a path that is both a file and a folder;
* more entries than `max_entries`, more declared bytes than `max_unpacked_bytes`, an entry whose declared
  ratio (uncompressed / compressed) is over `max_ratio` (for entries over `ratio_floor_bytes`: a small
  file may compress very well, it cannot be a bomb);
* symbolic links whose target is absolute or resolves outside the tree (the targets are read, as the
  kernel would follow them, links through links included); links that stay inside are kept.

The top folder: when every entry lies under one folder (as in GitHub's "Download ZIP", `repo-main/...`),
that folder is stripped, so the workspace is the project itself. A `.git` folder in the archive is left
out (the snapshot never includes one, and its config could run commands). Paths are kept otherwise as
written, `./` and repeated slashes removed.

`extract` then unpacks into an empty folder without trusting the header: the bytes each entry produces are
counted as they stream, so an entry producing more than its header says, or the total going over the
limit, or the ratio of produced to compressed bytes going over the limit, stops the extraction; a bad
CRC, a truncated archive or a local header that disagrees with the central directory is a corrupt
archive. Files are created through folder descriptors with `O_NOFOLLOW | O_EXCL` (`snapshots.folders`),
symbolic links last, so nothing is ever written through a link or outside the folder. Modes: 0755 when
the entry has an execute bit, 0644 otherwise.

Every refusal is `InvalidArgument` (the archive is wrong) or `ResourceExhausted` (a limit; the message
names the setting), starting with "zip archive refused:".
"""

from __future__ import annotations

import lzma
import os
import posixpath
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from runner.client.limits import format_bytes
from runner.domain.errors import InvalidArgument, ResourceExhausted
from runner.domain.models import FileKind
from runner.domain.paths import MAX_PATH_BYTES, check_relative_path, check_symlink_targets
from runner.snapshots.folders import FILE_FLAGS, Folders, write_all
from runner.sources.settings import MiB, SourceSettings

CHUNK = 1 << 20
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_UNIX = 3
_UNPACKED = "--zip-max-unpacked-mb / CODEX_SYS_ZIP_MAX_UNPACKED_MB"


def _refused(text: str) -> InvalidArgument:
    return InvalidArgument(f"zip archive refused: {text}")


def _limit(text: str, setting: str) -> ResourceExhausted:
    return ResourceExhausted(f"zip archive refused: {text} (the operator sets it with {setting})")


@dataclass(frozen=True, slots=True)
class PlannedEntry:
    info: zipfile.ZipInfo
    path: str  # in the tree, top folder stripped
    kind: FileKind | None  # None: a folder


@dataclass(slots=True)
class Plan:
    entries: list[PlannedEntry] = field(default_factory=list)
    stripped: str = ""  # the top folder removed from every path, if any
    left_out: list[str] = field(default_factory=list)  # `.git` entries
    declared_bytes: int = 0

    @property
    def files(self) -> int:
        return sum(1 for e in self.entries if e.kind is not None)


def open_archive(source: str | Path | BinaryIO) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise _refused(f"not a zip archive, or a corrupt one ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise _refused(f"an entry's name is flagged UTF-8 but is not ({exc.object[:80]!r})") from exc
    except (NotImplementedError, ValueError, OSError, EOFError) as exc:
        raise _refused(f"unreadable central directory ({exc})") from exc


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    if info.flag_bits & _FLAG_UTF8:
        return info.orig_filename.encode("utf-8")
    return info.orig_filename.encode("cp437")


def _entry_path(info: zipfile.ZipInfo) -> tuple[str, bool]:
    """(canonical path, is a folder) of an entry; refuses names that leave the tree or are not UTF-8."""
    raw = _raw_name(info)
    name = info.orig_filename
    if not info.flag_bits & _FLAG_UTF8 and not raw.isascii():
        raise _refused(f"entry {raw!r} has a name that is not UTF-8 (the archive does not flag it UTF-8 and it "
                       "is not ASCII); make the archive with a tool that writes UTF-8 names")
    if "\\" in name:
        raise _refused(f"entry {name!r} has a backslash in its path (a Windows path); paths must use '/'")
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isalpha()):
        raise _refused(f"entry {name!r} has an absolute path; paths must be relative to the archive's root")
    segments = [s for s in name.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise _refused(f"entry {name!r} has a '..' segment and would be written outside the folder (zip-slip)")
    path = "/".join(segments)
    is_dir = name.endswith("/") or stat.S_ISDIR(info.external_attr >> 16)
    if path:
        check_relative_path(path, f"zip entry {name!r}")
    return path, is_dir


def _kind(info: zipfile.ZipInfo, path: str) -> FileKind:
    mode = info.external_attr >> 16 if info.create_system == _UNIX else 0
    kind_bits = stat.S_IFMT(mode)
    if kind_bits == stat.S_IFLNK:
        return FileKind.SYMLINK
    if kind_bits not in (0, stat.S_IFREG):
        raise _refused(f"entry {path!r} is not a file, folder or symbolic link (mode {oct(mode)})")
    return FileKind.EXECUTABLE if mode & 0o111 else FileKind.FILE


def plan(archive: zipfile.ZipFile, settings: SourceSettings) -> Plan:
    """Check the central directory (see the module docstring); what `extract` will write."""
    infos = archive.infolist()
    if len(infos) > settings.max_entries:
        raise _limit(f"it has {len(infos):,} entries; the limit is {settings.max_entries:,}",
                     "--zip-max-entries / CODEX_SYS_ZIP_MAX_ENTRIES")
    raw: list[tuple[zipfile.ZipInfo, str, bool]] = []
    declared = 0
    for info in infos:
        path, is_dir = _entry_path(info)
        if info.flag_bits & _FLAG_ENCRYPTED:
            raise _refused(f"entry {path!r} is encrypted; encrypted archives are not supported")
        if not is_dir and info.compress_type not in _METHODS:
            raise _refused(f"entry {path!r} uses compression method {info.compress_type}; only stored, deflate, "
                           "bzip2 and LZMA are supported")
        if not is_dir:
            declared += info.file_size
            _check_ratio(path, info.file_size, info.compress_size, settings)
        if path:
            raw.append((info, path, is_dir))
    if declared > settings.max_unpacked_bytes:
        raise _limit(f"its entries hold {format_bytes(declared)} unpacked; the limit is "
                     f"{settings.max_unpacked_bytes // MiB} MiB", _UNPACKED)
    result = Plan(declared_bytes=declared)
    result.stripped = _common_top(raw)
    seen: dict[str, bool] = {}
    for info, listed, is_dir in raw:
        path = listed[len(result.stripped) + 1:] if result.stripped else listed
        if not path:
            continue
        if path == ".git" or path.startswith(".git/") or "/.git/" in f"/{path}/":
            result.left_out.append(path)
            continue
        if path in seen:
            if is_dir and seen[path]:
                continue  # a folder listed twice is harmless
            raise _refused(f"entry {path!r} appears twice")
        seen[path] = is_dir
        result.entries.append(PlannedEntry(info, path, None if is_dir else _kind(info, path)))
    folders: set[str] = set()
    for path in seen:
        parent = posixpath.dirname(path)
        while parent and parent not in folders:
            folders.add(parent)
            parent = posixpath.dirname(parent)
    clash = sorted(p for p, is_dir in seen.items() if not is_dir and p in folders)
    if clash:
        raise _refused(f"entry {clash[0]!r} is both a file and a folder")
    return result


def _check_ratio(path: str, produced: int, compressed: int, settings: SourceSettings) -> None:
    if produced > settings.ratio_floor_bytes and produced > settings.max_ratio * max(compressed, 1):
        raise _limit(f"entry {path!r} expands {format_bytes(max(compressed, 1))} into more than "
                     f"{format_bytes(produced)} (a ratio over {settings.max_ratio:g}: a zip bomb?); the limit is "
                     f"{settings.max_ratio:g}", "--zip-max-ratio / CODEX_SYS_ZIP_MAX_RATIO")


def _common_top(raw: list[tuple[zipfile.ZipInfo, str, bool]]) -> str:
    tops = {path.split("/", 1)[0] for _, path, _ in raw}
    if len(tops) != 1:
        return ""
    top = next(iter(tops))
    # Only a folder is stripped: every entry must be inside it (or be the folder itself).
    if all(path != top or is_dir for _, path, is_dir in raw) and any(path != top for _, path, _ in raw):
        return top
    return ""


def read_symlink_targets(archive: zipfile.ZipFile, planned: Plan) -> dict[str, str]:
    """Every symbolic link's target, checked to stay inside the tree."""
    targets: dict[str, str] = {}
    for entry in planned.entries:
        if entry.kind is not FileKind.SYMLINK:
            continue
        if entry.info.file_size > MAX_PATH_BYTES:
            raise _refused(f"symbolic link {entry.path!r} has a target longer than {MAX_PATH_BYTES} bytes")
        data = b"".join(_stream(archive, entry, entry.info.file_size, _Budget(MAX_PATH_BYTES)))
        try:
            targets[entry.path] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _refused(f"symbolic link {entry.path!r} has a target that is not UTF-8") from None
    try:
        check_symlink_targets(targets)
    except InvalidArgument as exc:
        raise _refused(str(exc)) from exc
    return targets


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total


def _stream(archive: zipfile.ZipFile, entry: PlannedEntry, declared: int, budget: _Budget,
            settings: SourceSettings | None = None) -> Iterator[bytes]:
    """An entry's bytes, counted as they are produced (see the module docstring)."""
    produced = 0
    try:
        with archive.open(entry.info) as src:
            while True:
                data = src.read(CHUNK)
                if not data:
                    return
                produced += len(data)
                budget.left -= len(data)
                if produced > declared:
                    raise _refused(f"entry {entry.path!r} produces more bytes than its header says "
                                   f"({format_bytes(declared)})")
                if budget.left < 0 and settings is not None:
                    raise _limit(f"its entries produce more than {settings.max_unpacked_bytes // MiB} MiB "
                                 "unpacked (the limit)", _UNPACKED)
                if settings is not None:
                    _check_ratio(entry.path, produced, entry.info.compress_size, settings)
                yield data
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError) as exc:
        raise _refused(f"entry {entry.path!r} is corrupt ({exc})") from exc
    except (EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        # Truncated data ends in EOFError; bad bzip2 data in OSError.
        raise _refused(f"entry {entry.path!r} cannot be read ({type(exc).__name__}: {exc})") from exc


def extract(archive: zipfile.ZipFile, planned: Plan, dest: Path, settings: SourceSettings) -> int:
    """Unpack the planned entries into the empty folder `dest`; the bytes written."""
    targets = read_symlink_targets(archive, planned)
    folders = Folders(dest)
    budget = _Budget(settings.max_unpacked_bytes)
    written = 0
    try:
        for entry in planned.entries:
            if entry.kind is None:
                folders.fd(entry.path)
            elif entry.kind is not FileKind.SYMLINK:
                parent, name = folders.parent_and_name(entry.path)
                fd = os.open(name, FILE_FLAGS, 0o755 if entry.kind is FileKind.EXECUTABLE else 0o644, dir_fd=parent)
                try:
                    os.fchmod(fd, 0o755 if entry.kind is FileKind.EXECUTABLE else 0o644)
                    for data in _stream(archive, entry, entry.info.file_size, budget, settings):
                        write_all(fd, data)
                        written += len(data)
                finally:
                    os.close(fd)
        # Links last: nothing is written after them, so no write can pass through one.
        for path, target in targets.items():
            parent, name = folders.parent_and_name(path)
            os.symlink(target, name, dir_fd=parent)
    except FileExistsError as exc:
        raise _refused(f"an entry would replace another ({exc.filename or exc})") from exc
    except OSError as exc:
        raise _refused(f"an entry cannot be written ({exc})") from exc
    finally:
        folders.close()
    return written
