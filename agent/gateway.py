"""HTTP/1.1 to the gateway: the agent's only way out of the sandbox.

In a local sandbox the gateway is a unix socket bound into it; in a Kubernetes pod it is a TCP address
(`AgentTaskSpec.gateway_url`, `http://` or `https://`, the latter verified against the system's CA
store). `http.client` does the HTTP either way; `UnixHTTPConnection` only swaps the TCP connect for an
AF_UNIX one. A connection is kept alive across requests (one connect per task rather than per request).
A connection is not thread-safe: each user (the model client, the event sender) owns its own
`GatewayConnection`.

Failures to reach the gateway are raised as `GatewayUnreachable`; any HTTP answer, error statuses
included, is returned as a `Reply` for the caller to interpret. The bearer token goes in a header and
nowhere else: it is never logged, and error messages never quote headers.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class GatewayUnreachable(Exception):
    """The request did not get an HTTP answer (no socket, connection reset, timeout)."""


@dataclass(frozen=True, slots=True)
class GatewayURL:
    """A gateway reached over TCP: `http(s)://host[:port][/prefix]`, nothing else (no credentials, query
    or fragment: the token travels in a header)."""

    scheme: str
    host: str
    port: int
    prefix: str  # the path before `/v1/...`, without a trailing slash; usually empty

    @classmethod
    def parse(cls, url: str) -> GatewayURL:
        """Raises `ValueError` saying what is wrong with `url` (quoted without credentials or query)."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"gateway URL {_shown(url)!r} is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"gateway URL {_shown(url)!r} must start with http:// or https://")
        if not parts.hostname:
            raise ValueError(f"gateway URL {_shown(url)!r} has no host")
        if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
            raise ValueError(f"gateway URL {_shown(url)!r} may not carry credentials, a query or a fragment")
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body parsed as JSON; raises `ValueError` when it is not."""
        return json.loads(self.body)

    def error_type(self) -> str:
        """The `type` (or `code`) of an OpenAI-style error body, '' when there is none."""
        try:
            obj = self.json()
        except ValueError:
            return ""
        error = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(error, dict):
            for key in ("type", "code"):
                if isinstance(error.get(key), str):
                    return str(error[key])
        return ""

    def error_message(self) -> str:
        """The message of an OpenAI-style error body (`{"error": {"message": ...}}`), else a short excerpt."""
        try:
            obj = self.json()
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            error = obj.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return str(error["message"])
            if isinstance(error, str):
                return error
        text = self.body[:300].decode("utf-8", errors="replace").strip()
        return f"HTTP {self.status}" + (f": {text}" if text else "")


def _shown(url: str) -> str:
    """`url` fit for a message: whatever may be a secret (user information, query, fragment) left out."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    shown = f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}" if rest else scheme
    return shown.split("?", 1)[0].split("#", 1)[0]


class UnixHTTPConnection(http.client.HTTPConnection):
    """An `HTTPConnection` whose transport is a unix stream socket."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        # The host only fills the Host header; the gateway routes on the path.
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class GatewayConnection:
    """One kept-alive connection to the gateway, authenticated with the task's token: over TCP to `url`
    when one is given (see `GatewayURL`), else over the unix socket `socket_path`."""

    def __init__(self, socket_path: str, token: str, timeout_s: float, *, url: str = "") -> None:
        self._socket_path = socket_path
        self._url = GatewayURL.parse(url) if url else None
        self._token = token
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def post_json(self, path: str, payload: Any) -> Reply:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {self._token}",
        }
        # A kept-alive connection the gateway closed while we were idle fails on first use; that one
        # failure is retried at once on a fresh connection. Anything else is the caller's to retry.
        reused = self._conn is not None
        try:
            return self._post(path, body, headers)
        except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine) as exc:
            self.close()
            if not reused:
                raise GatewayUnreachable(self._describe(exc)) from exc
            log.debug("kept-alive gateway connection was closed; reconnecting")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise GatewayUnreachable(self._describe(exc)) from exc
        try:
            return self._post(path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise GatewayUnreachable(self._describe(exc)) from exc

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        if self._conn is None:
            if self._url is not None:
                self._conn = self._url.connection(self._timeout_s)
            else:
                self._conn = UnixHTTPConnection(self._socket_path, self._timeout_s)
        conn = self._conn
        conn.request("POST", (self._url.prefix if self._url is not None else "") + path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.will_close:
            self.close()
        return Reply(response.status, data, {k.lower(): v for k, v in response.getheaders()})

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


    def _describe(self, exc: BaseException) -> str:
        """What went wrong, naming the gateway (never the token: it is only ever in a header)."""
        if self._url is None:
            if isinstance(exc, FileNotFoundError):
                return f"gateway socket {self._socket_path} does not exist"
            where = "gateway"
        else:
            where = f"gateway {self._url}"
            if isinstance(exc, ConnectionRefusedError):
                return f"{where} refused the connection (is the runner's gateway listening there?)"
            if isinstance(exc, socket.gaierror):
                return f"{where}: cannot resolve {self._url.host!r} ({exc.strerror})"
            if isinstance(exc, ssl.SSLCertVerificationError):
                return f"{where}: its TLS certificate was not accepted ({exc.verify_message})"
        if isinstance(exc, TimeoutError):
            return f"{where} did not answer in time"
        return f"{where} connection failed: {exc.__class__.__name__}: {exc}"
