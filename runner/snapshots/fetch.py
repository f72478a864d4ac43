"""`python -m runner.snapshots.fetch --transfer FILE --into DIR`: a pod's snapshot, in one GET.

The init container of a Kubernetes agent pod runs this. It reads `transfer.json` (`agent.pod_transfer`),
downloads the pack from its presigned URL with one GET, and streams it through the safe unpacker
(`pack.unpack_unlisted`: the pod has no manifest) into DIR, which must be empty. The whole stream must
have the SHA-256 and size the runner stated (`pack.digest`, `pack.size`): that check is the authority,
the runner having computed it over a pack it built from verified blobs.

A connection error, a timeout, a cut-short body or a 5xx empties DIR and starts again, a few times
with backoff; any other 4xx (an expired link: 403) is final, and so is a pack that does not match its
digest or that the unpacker refuses. On failure DIR is left empty.

Exit status: 0 the snapshot is in DIR; 1 an unexpected error; 2 unusable arguments, transfer.json or DIR;
3 the pack could not be downloaded; 4 the pack was refused (not a safe pack, or not the stated bytes);
5 the snapshot could not be written into DIR (no space, no permission). Any failure is one
line on stderr, also written to /dev/termination-log when that file is writable, where Kubernetes shows
it as the container's termination message. The pack's URL is a credential and is never printed: only
its scheme, host and path.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

from agent.pod_io import (
    ATTEMPTS,
    BACKOFF_S,
    TIMEOUT_S,
    Refused,
    Retryable,
    network_error,
    parse_arguments,
    redact,
    report,
    scrub,
    send,
    with_retries,
)
from agent.pod_transfer import PackLink, TaskFileError, Transfer
from runner.domain.errors import InvalidArgument, Unavailable
from runner.domain.models import Digest
from runner.snapshots.pack import Unpacked, unpack_unlisted

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_DOWNLOAD = 3
EXIT_REFUSED = 4
EXIT_WRITE = 5


class _Failed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Body:
    """The response body, read up to the pack's stated size: an end before it is a cut-short download
    (`Retryable`), not the end of the pack. Network errors while reading become `Retryable` too."""

    def __init__(self, response: http.client.HTTPResponse, size: int, where: str) -> None:
        self._response = response
        self._size = size
        self._where = where
        self.received = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._response.read(n if n >= 0 else None)
        except (OSError, http.client.HTTPException) as exc:
            raise Retryable(f"GET {self._where}: {network_error(exc)} after {self.received} of {self._size} "
                            "bytes") from None
        self.received += len(data)
        if not data and self.received < self._size and n != 0:
            raise Retryable(f"GET {self._where}: the download stopped after {self.received} of {self._size} bytes")
        return data


def fetch(link: PackLink, into: Path, *, timeout_s: float = TIMEOUT_S) -> Unpacked:
    """One attempt: GET the pack and unpack it into the empty folder `into`."""
    where = redact(link.url)
    request = urllib.request.Request(link.url, headers={"Accept-Encoding": "identity"})
    with send(request, timeout_s) as response:
        offered = response.getheader("Content-Length")
        if offered is not None and offered.strip() != str(link.size):
            raise _Failed(EXIT_REFUSED, f"GET {where}: the server offers {offered.strip()} bytes, but the snapshot "
                                        f"pack is {link.size} bytes; refused")
        return unpack_unlisted(_Body(response, link.size, where), into, expected=Digest(link.sha256, link.size))


def fetch_with_retries(link: PackLink, into: Path, *, timeout_s: float = TIMEOUT_S, attempts: int = ATTEMPTS,
                       backoff_s: float = BACKOFF_S) -> Unpacked:
    """`fetch`, retried (DIR emptied before each new attempt); raises `_Failed` with the exit status."""
    def attempt() -> Unpacked:
        try:
            return fetch(link, into, timeout_s=timeout_s)
        except Retryable:
            _empty(into)
            raise

    try:
        return with_retries("downloading the snapshot pack", attempt, attempts=attempts, backoff_s=backoff_s)
    except (Retryable, Refused) as exc:
        raise _Failed(EXIT_DOWNLOAD, f"could not download the snapshot pack: {exc}") from None
    except Unavailable as exc:  # the stream's digest or size is not the stated one
        raise _Failed(EXIT_REFUSED, f"snapshot pack refused: it is not the pack the runner stated ({exc})") from None
    except InvalidArgument as exc:  # PackError: not a safe pack
        raise _Failed(EXIT_REFUSED, str(exc)) from None
    except OSError as exc:  # the requests' errors are Retryable by now: this is writing into `into`
        raise _Failed(EXIT_WRITE, f"cannot write the snapshot into {into}: "
                                  f"{exc.strerror or exc.__class__.__name__}") from None


def _prepare(into: Path) -> None:
    try:
        into.mkdir(parents=True, exist_ok=True)
        if into.is_symlink() or not into.is_dir():
            raise _Failed(EXIT_USAGE, f"{into} is not a folder")
        if any(into.iterdir()):
            raise _Failed(EXIT_USAGE, f"{into} is not empty; the snapshot goes into an empty folder")
    except OSError as exc:
        raise _Failed(EXIT_USAGE, f"cannot use {into}: {exc.strerror or exc}") from None


def _empty(into: Path) -> None:
    """Remove what an attempt wrote (never following a symlink it made); `into` itself stays, as it
    may be a mount point."""
    with os.scandir(into) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runner.snapshots.fetch",
                                     description="Download a snapshot pack (transfer.json) into an empty folder.")
    parser.add_argument("--transfer", required=True, type=Path, help="transfer.json, with the pack's URL and digest")
    parser.add_argument("--into", required=True, type=Path, help="the (empty) folder to unpack into")
    return parse_arguments(parser, argv, "the download")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    started = time.monotonic()
    url = ""
    try:
        try:
            transfer = Transfer.read(args.transfer)
        except TaskFileError as exc:
            raise _Failed(EXIT_USAGE, str(exc)) from None
        if transfer.pack is None:
            raise _Failed(EXIT_USAGE, f"{args.transfer} names no snapshot pack")
        url = transfer.pack.url
        _prepare(args.into)
        try:
            unpacked = fetch_with_retries(transfer.pack, args.into, timeout_s=args.timeout, attempts=args.attempts,
                                          backoff_s=args.backoff)
        except BaseException:
            with contextlib.suppress(OSError):
                _empty(args.into)
            raise
    except _Failed as exc:
        report(scrub(str(exc), [url]), args.termination_log)
        return exc.status
    except Exception as exc:
        log.debug("unexpected failure", exc_info=True)
        report(scrub(f"fetching the snapshot failed unexpectedly: {exc.__class__.__name__}: {exc}", [url]),
               args.termination_log)
        return EXIT_INTERNAL
    log.info("snapshot unpacked", extra={"files": unpacked.files, "symlinks": unpacked.symlinks,
                                         "bytes": unpacked.bytes, "pack_bytes": transfer.pack.size,
                                         "ms": round((time.monotonic() - started) * 1000)})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
