"""HTTP and failure reports shared by the two programs of an agent pod: the fetch init container
(`runner.snapshots.fetch`) and the agent container's entry point (`agent.pod`). Standard library only.

Requests go straight to the URL: no proxy from the environment (a NetworkPolicy allows the storage
peer, not a proxy) and no redirect followed (a presigned URL has no reason to move, and a redirect
elsewhere would carry the request where the policy does not expect it). Each has a timeout for the
connection and for every read.

`with_retries` retries what another attempt may cure (`Retryable`: no connection, reset, timeout, 5xx,
408, 429) with exponential backoff, a bounded number of times, and never what it cannot (`Refused`:
any other 4xx, such as an expired link's 403).

Presigned URLs are bearer credentials: `redact` keeps scheme, host and path and drops the signed query,
and every message built here is passed through `scrub` for good measure. A program's last word is one
line on stderr and, for Kubernetes to show it in the pod's status, in /dev/termination-log
(`report`).
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, BinaryIO, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

TIMEOUT_S = 30.0
ATTEMPTS = 5
BACKOFF_S = 1.0
MAX_BACKOFF_S = 15.0
TERMINATION_LOG = Path("/dev/termination-log")
# Kubernetes keeps at most 4096 bytes of a termination message.
MAX_TERMINATION_MESSAGE = 4096
_RETRY_STATUSES = frozenset({408, 429})
_S3_FIELD = re.compile(rb"<(Code|Message)>([^<]{0,300})</\1>")
_ANY_QUERY = re.compile(r"(https?://[^\s?'\"<>]*)\?[^\s'\"<>]+")


class Retryable(Exception):
    """A failure another attempt may not meet: no connection, a reset, a timeout, a 5xx."""


class Refused(Exception):
    """An answer another attempt would not change (a 4xx other than 408 and 429)."""


def redact(url: str) -> str:
    """The URL without what makes it a credential: scheme, host and path only."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<a URL that cannot be parsed>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    query = "?<signature redacted>" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


def scrub(text: str, urls: Iterable[str] = ()) -> str:
    """`text` with each of `urls`, each one's query string, and the query of anything else that looks
    like an http(s) URL replaced by its redacted form."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, redact(url))
        query = urllib.parse.urlsplit(url).query
        if query:
            text = text.replace(query, "<signature redacted>")
    return _ANY_QUERY.sub(r"\1?<signature redacted>", text)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: http.client.HTTPMessage, newurl: str) -> None:
        return None  # the 3xx is then raised as an HTTPError, and refused


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def send(request: urllib.request.Request, timeout_s: float) -> http.client.HTTPResponse:
    """The response to `request` with a 2xx status, else `Retryable` or `Refused` with a message that
    names the request by its redacted URL."""
    url = request.full_url
    where = f"{request.get_method()} {redact(url)}"
    try:
        response = _OPENER.open(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        with exc:
            body = _read_some(exc)
        problem = scrub(f"{where}: {http_status(exc.code, exc.reason, body)}", [url])
        if exc.code >= 500 or exc.code in _RETRY_STATUSES:
            raise Retryable(problem) from None
        raise Refused(problem) from None
    except (OSError, http.client.HTTPException) as exc:
        raise Retryable(scrub(f"{where}: {network_error(exc)}", [url])) from None
    except ValueError:  # urllib's words for a malformed URL quote it whole
        raise Refused(f"{where}: the URL cannot be used") from None
    assert isinstance(response, http.client.HTTPResponse)
    return response


def _read_some(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read(4096)
    except (OSError, http.client.HTTPException):
        return b""


def http_status(status: int, reason: str, body: bytes) -> str:
    """`HTTP 403 AccessDenied: Request has expired` from an S3 error body, else the status and reason."""
    found = {name.decode(): value.decode("utf-8", "replace").strip() for name, value in _S3_FIELD.findall(body)}
    detail = ": ".join(v for v in (found.get("Code"), found.get("Message")) if v)
    return f"HTTP {status} {detail or reason}".rstrip()


def network_error(exc: BaseException) -> str:
    """What went wrong on the way, in words (an exception's text can be empty or cryptic)."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, urllib.error.URLError):
        return f"request failed: {exc.reason}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.__class__.__name__}: {exc.strerror}"
    return f"{exc.__class__.__name__}: {exc}"


def with_retries(what: str, attempt: Callable[[], T], *, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """`attempt()` until it returns, raises anything but `Retryable`, or has failed `attempts` times
    (the last `Retryable` is raised, saying how many attempts were made). Waits `backoff_s`, then
    twice as long each time, at most `MAX_BACKOFF_S`."""
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except Retryable as exc:
            if number >= attempts:
                raise Retryable(f"{exc} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})") from None
            delay = min(backoff_s * 2 ** (number - 1), MAX_BACKOFF_S)
            log.warning("%s failed; trying again in %.1f s: %s", what, delay, exc)
            sleep(delay)
    raise AssertionError("unreachable")


def put_file(url: str, source: BinaryIO, size: int, timeout_s: float) -> None:
    """One PUT of the first `size` bytes of `source` (from its start) to a presigned URL."""
    source.seek(0)
    request = urllib.request.Request(url, data=source, method="PUT", headers={
        "Content-Length": str(size), "Content-Type": "application/octet-stream"})
    with send(request, timeout_s) as response:
        response.read()


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None, what: str) -> argparse.Namespace:
    """Add the options both pod programs share (`--timeout`, `--attempts`, `--backoff` for each of
    their requests, named `what` in the help; `--termination-log`), parse `argv`, and send log lines
    to stderr."""
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help=f"seconds to connect and for each read of {what} (default {TIMEOUT_S:g})")
    parser.add_argument("--attempts", type=int, default=ATTEMPTS, help=f"tries of {what} (default {ATTEMPTS})")
    parser.add_argument("--backoff", type=float, default=BACKOFF_S,
                        help=f"seconds before the second try of {what}, doubling after (default {BACKOFF_S:g})")
    parser.add_argument("--termination-log", type=Path, default=TERMINATION_LOG,
                        help=f"where the last line also goes, if that file exists (default {TERMINATION_LOG})")
    args = parser.parse_args(argv)
    if args.attempts < 1 or args.timeout <= 0 or args.backoff < 0:
        parser.error("--attempts must be at least 1, --timeout positive and --backoff not negative")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args


def report(message: str, termination_log: Path | None = TERMINATION_LOG) -> None:
    """The program's last word: one line on stderr, and in `termination_log` when that file is there
    and writable (Kubernetes creates /dev/termination-log for each container; it is never created
    here)."""
    line = scrub(" ".join(message.split()))
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    if termination_log is None:
        return
    try:
        fd = os.open(termination_log, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        data = line.encode("utf-8", "replace")[:MAX_TERMINATION_MESSAGE]
        os.write(fd, data.decode("utf-8", "ignore").encode())
    except OSError as exc:
        log.debug("could not write the termination message: %s", exc.strerror)
    finally:
        os.close(fd)
