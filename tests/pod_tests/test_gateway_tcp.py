"""The agent's gateway connection over TCP (`AgentTaskSpec.gateway_url`): errors name the URL and never
the token; https is verified against the system's CA store (a private CA is refused until trusted); a
spec with an unusable URL is refused up front."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio_tests.test_tls import make_certificates

from agent.gateway import GatewayConnection, GatewayUnreachable
from agent.taskspec import SpecError, parse_spec

pytestmark = pytest.mark.timeout(30)

TOKEN = "tok-SECRET-tcp"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_gateway_is_named_without_the_token() -> None:
    port = closed_port()
    connection = GatewayConnection("/unused.sock", TOKEN, 5.0, url=f"http://127.0.0.1:{port}")
    with pytest.raises(GatewayUnreachable) as raised:
        connection.post_json("/v1/agent/events", {"events": []})
    assert str(raised.value) == (f"gateway http://127.0.0.1:{port} refused the connection "
                                 "(is the runner's gateway listening there?)")
    connection = GatewayConnection("/unused.sock", TOKEN, 5.0, url="http://no-such-host.invalid:8081")
    with pytest.raises(GatewayUnreachable, match=r"gateway http://no-such-host.invalid:8081: cannot resolve"):
        connection.post_json("/v1/agent/events", {"events": []})


@pytest.fixture
def tls_gateway(tmp_path: Path) -> Iterator[tuple[int, Path, list[dict[str, str]]]]:
    """An https server that answers every POST with `{}` and records its path and Authorization."""
    ca = make_certificates(tmp_path)
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"path": self.path, "authorization": self.headers["Authorization"]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "public.crt", tmp_path / "private.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1]), ca, seen
    server.shutdown()
    server.server_close()


def test_https_is_verified_against_the_system_store(tls_gateway: tuple[int, Path, list[dict[str, str]]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    port, ca, seen = tls_gateway
    url = f"https://127.0.0.1:{port}/gw"
    with pytest.raises(GatewayUnreachable) as raised:
        GatewayConnection("/unused.sock", TOKEN, 5.0, url=url).post_json("/v1/agent/events", {"events": []})
    assert str(raised.value).startswith(f"gateway {url}: its TLS certificate was not accepted")
    assert TOKEN not in str(raised.value) and seen == []

    # Trusted through the system store's own override (as a CA bundle in the image would be).
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    connection = GatewayConnection("/unused.sock", TOKEN, 5.0, url=url)
    reply = connection.post_json("/v1/agent/events", {"events": []})
    connection.post_json("/v1/agent/events", {"events": []})  # the same kept-alive connection
    connection.close()
    assert (reply.status, reply.json()) == (200, {})
    assert seen == [{"path": "/gw/v1/agent/events", "authorization": f"Bearer {TOKEN}"}] * 2


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://10.0.0.1:8081", "must start with http:// or https://"),
    ("http://:8081", "has no host"),
    ("http://10.0.0.1:99999", "is not a valid URL"),
    ("http://user:pw-SECRET@10.0.0.1:8081", "'http://10.0.0.1:8081' may not carry credentials, a query or a"),
    ("http://10.0.0.1:8081/?token=SECRET", "'http://10.0.0.1:8081/' may not carry credentials, a query or a"),
    ("ftp://u:SECRET@10.0.0.1/x?y", "'ftp://10.0.0.1/x' must start with http:// or https://"),
])
def test_a_spec_with_an_unusable_gateway_url_is_refused(tmp_path: Path, url: str, problem: str) -> None:
    spec = {"task_id": "t", "token": TOKEN, "instruction": "x", "model": "m", "workspace": str(tmp_path),
            "gateway_url": url}
    with pytest.raises(SpecError) as raised:
        parse_spec(json.dumps(spec).encode())
    assert problem in str(raised.value), str(raised.value)
    assert "SECRET" not in str(raised.value)
    spec["gateway_url"] = "http://10.1.2.3:8081"
    assert parse_spec(json.dumps(spec).encode()).gateway_url == "http://10.1.2.3:8081"
