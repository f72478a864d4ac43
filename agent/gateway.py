"""HTTP/1.1 over the gateway's unix socket: the agent's only way out of the sandbox.

`http.client` does the HTTP; `UnixHTTPConnection` only swaps the TCP connect for an AF_UNIX one, so a
connection is kept alive across requests (one connect per task rather than per request). A
connection is not thread-safe: each user (the model client, the event sender) owns its own
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
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class GatewayUnreachable(Exception):
    """The request did not get an HTTP answer (no socket, connection reset, timeout)."""


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
    """One kept-alive connection to the gateway, authenticated with the task's token."""

    def __init__(self, socket_path: str, token: str, timeout_s: float) -> None:
        self._socket_path = socket_path
        self._token = token
        self._timeout_s = timeout_s
        self._conn: UnixHTTPConnection | None = None

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
                raise GatewayUnreachable(f"gateway connection failed: {exc}") from exc
            log.debug("kept-alive gateway connection was closed; reconnecting")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise GatewayUnreachable(_describe(exc, self._socket_path)) from exc
        try:
            return self._post(path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise GatewayUnreachable(_describe(exc, self._socket_path)) from exc

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        if self._conn is None:
            self._conn = UnixHTTPConnection(self._socket_path, self._timeout_s)
        conn = self._conn
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.will_close:
            self.close()
        return Reply(response.status, data, {k.lower(): v for k, v in response.getheaders()})

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


def _describe(exc: BaseException, socket_path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"gateway socket {socket_path} does not exist"
    if isinstance(exc, TimeoutError):
        return "gateway did not answer in time"
    return f"gateway connection failed: {exc.__class__.__name__}: {exc}"
