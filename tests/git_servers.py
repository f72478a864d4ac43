"""Real Git servers for tests and benchmarks: `git daemon` and `git http-backend` behind a local HTTP server.

Both serve the bare repositories under one folder (`base`), on a free loopback port:

- `GitDaemon`: `git daemon --export-all` as a process (git:// URLs); `receive_pack=True` allows pushes.
- `GitHttpServer`: `git http-backend` run as a CGI program for each request by a small threaded
  `http.server` in this process (http:// URLs, smart protocol v0/v2). `auth=("user", "secret")` asks for
  HTTP Basic credentials on every request (to test credentials in URLs); `receive_pack=True` allows pushes.

`make_repo` creates a bare repository with a few commits, a branch and tags (`SampleRepo` names them),
and `git()` runs git with a hermetic environment (no system or global config, fixed identity and dates),
so the same commands give the same commit ids everywhere. `ArgvRecorder` puts a `git` first on PATH that
writes down the command line of every git process and remote helper (what `ps` would show) before it runs
the real one. Nothing here depends on pytest: the benchmarks import this module too.
"""

from __future__ import annotations

import base64
import functools
import hmac
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from servers import ServerProcess, _port_open, free_port


@functools.cache
def _empty_home() -> str:
    return tempfile.mkdtemp(prefix="cx-git-home-")


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment in which git reads no system or user config and signs commits with a fixed name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "HOME": _empty_home(), "XDG_CONFIG_HOME": _empty_home(), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.com",
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    })
    env.update(extra or {})
    return env


class ArgvRecorder:
    """A folder to put first on PATH: its `git` appends its command line to `log` and runs the real git
    with an exec path whose `git-remote-http(s)` do the same, so the remote helpers (which get the URL as
    an argument) are recorded too."""

    def __init__(self, folder: Path) -> None:
        real = shutil.which("git")
        assert real is not None
        real_exec = subprocess.run([real, "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
        self.bin = folder / "bin"
        self.log = folder / "argv.log"
        exec_path = folder / "git-core"
        self.bin.mkdir(parents=True)
        exec_path.mkdir()
        self.log.touch()
        for entry in os.listdir(real_exec):
            if entry not in ("git-remote-http", "git-remote-https"):
                (exec_path / entry).symlink_to(os.path.join(real_exec, entry))
        self._wrap(exec_path / "git-remote-http", f"{real_exec}/git-remote-http")
        self._wrap(exec_path / "git-remote-https", f"{real_exec}/git-remote-https")
        self._wrap(self.bin / "git", real, f"GIT_EXEC_PATH={shlex.quote(str(exec_path))} ")

    def _wrap(self, path: Path, target: str, env: str = "") -> None:
        path.write_text(f'#!/bin/sh\nprintf \'%s\\n\' "{path.name} $*" >> {shlex.quote(str(self.log))}\n'
                        f'{env}exec {shlex.quote(target)} "$@"\n')
        path.chmod(0o755)

    @property
    def path(self) -> str:
        """PATH with the recording `git` first."""
        return f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"

    def lines(self) -> list[str]:
        """One line per git process or remote helper started: its name and arguments."""
        return self.log.read_text().splitlines()


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        input: bytes | None = None) -> str:
    """Run git hermetically; return its stdout (stripped). Raises with git's stderr on failure."""
    proc = subprocess.run(["git", *args], cwd=cwd, env=git_env(env), input=input, capture_output=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode().strip()


@dataclass
class SampleRepo:
    """A bare repository made by `make_repo` and the names in it."""

    path: Path
    name: str  # its path under the servers' base folder, e.g. "repo.git"
    default_branch: str = "main"
    branch: str = "feature"  # a second branch with one more file (`feature.txt`)
    tag: str = "v1"  # an annotated tag on the first commit
    light_tag: str = "v1-light"  # a lightweight tag on the first commit
    commits: dict[str, str] = field(default_factory=dict)  # "first", "head", "feature" -> commit id


_DEFAULT_FILES: Mapping[str, bytes] = {
    "README.md": b"# sample\n",
    "src/app.py": b"print('hello')\n",
}


def make_repo(base: Path, name: str = "repo.git", files: Mapping[str, bytes | str] | None = None,
              executables: tuple[str, ...] = ()) -> SampleRepo:
    """A bare repository `base/name`: `main` with two commits (the first holds `files`, the second adds
    `CHANGES.md`), `feature` one commit further than the first with `feature.txt`, tags `v1` (annotated)
    and `v1-light` on the first commit."""
    work = Path(tempfile.mkdtemp(prefix="cx-git-work-"))
    git("init", "-q", "-b", "main", str(work))
    for rel, content in (files or _DEFAULT_FILES).items():
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
        if rel in executables:
            target.chmod(0o755)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    git("tag", "-a", "v1", "-m", "version 1", cwd=work)
    git("tag", "v1-light", cwd=work)
    git("checkout", "-q", "-b", "feature", cwd=work)
    (work / "feature.txt").write_text("a feature\n")
    git("add", "feature.txt", cwd=work)
    git("commit", "-q", "-m", "feature", cwd=work)
    feature = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    (work / "CHANGES.md").write_text("- second commit\n")
    git("add", "CHANGES.md", cwd=work)
    git("commit", "-q", "-m", "second", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work)
    bare = base / name
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--bare", str(work), str(bare))
    # Clients may fetch any reachable commit by id (git allows it for tips only by default).
    git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=bare)
    git("config", "http.receivepack", "true", cwd=bare)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    return SampleRepo(path=bare, name=name, commits={"first": first, "head": head, "feature": feature})


class GitDaemon(ServerProcess):
    """`git daemon` serving every repository under `base` at git://127.0.0.1:PORT/<name>."""

    def __init__(self, workdir: Path, base: Path, *, receive_pack: bool = False) -> None:
        super().__init__("git-daemon", workdir)
        self.base = base
        self.port = free_port()
        self.receive_pack = receive_pack

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitDaemon:
        argv = ["git", "daemon", "--export-all", f"--base-path={self.base}", f"--port={self.port}",
                "--listen=127.0.0.1", "--reuseaddr", "--informative-errors", "--verbose"]
        if self.receive_pack:
            argv.append("--enable=receive-pack")
        self._spawn([*argv, str(self.base)], env=git_env())
        self._wait_ready(lambda: _port_open(self.port))
        return self


class GitHttpServer:
    """`git http-backend` as CGI behind a threaded `http.server` on 127.0.0.1:PORT, serving `base`."""

    def __init__(self, base: Path, *, auth: tuple[str, str] | None = None, receive_pack: bool = False,
                 protocol_v2: bool = True) -> None:
        self.base = base
        self.auth = auth
        self.receive_pack = receive_pack
        # False: the client's Git-Protocol header is not passed on, so the server speaks protocol v0, which
        # refuses wants of commits that are not at a ref's tip (unless uploadpack.allowAnySHA1InWant).
        self.protocol_v2 = protocol_v2
        self.requests: list[str] = []  # "METHOD path?query", for tests that check what was asked
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def url(self, name: str, *, credentials: bool = False) -> str:
        userinfo = f"{self.auth[0]}:{self.auth[1]}@" if credentials and self.auth else ""
        return f"http://{userinfo}127.0.0.1:{self.port}/{name}"

    def start(self) -> GitHttpServer:
        owner = self

        class Handler(_CgiHandler):
            server_owner = owner

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _CgiHandler(BaseHTTPRequestHandler):
    server_owner: GitHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet; `requests` records what was asked

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _authorised(self) -> bool:
        auth = self.server_owner.auth
        if auth is None:
            return True
        expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        return hmac.compare_digest(self.headers.get("Authorization", ""), expected)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        owner = self.server_owner
        path, _, query = self.path.partition("?")
        owner.requests.append(f"{self.command} {self.path}")
        body = self._body() if self.command == "POST" else b""
        if not self._authorised():
            self._reply(HTTPStatus.UNAUTHORIZED, {"WWW-Authenticate": 'Basic realm="git"'}, b"")
            return
        env = git_env({
            "GIT_PROJECT_ROOT": str(owner.base), "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command,
            "PATH_INFO": path, "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": owner.auth[0] if owner.auth else "anonymous",
            "GIT_HTTP_MAX_REQUEST_BUFFER": str(100 << 20),
        })
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol") and owner.protocol_v2:
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if not owner.receive_pack and "receive-pack" in self.path:
            self._reply(HTTPStatus.FORBIDDEN, {}, b"pushing is not enabled on this server\n")
            return
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120,
                              check=False)
        separator = b"\r\n\r\n" if b"\r\n\r\n" in proc.stdout else b"\n\n"
        head, _, payload = proc.stdout.partition(separator)
        status = HTTPStatus.OK
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = HTTPStatus(int(value.strip().split()[0]))
            elif key:
                headers[key.strip()] = value.strip()
        self._reply(status, headers, payload)

    def _reply(self, status: HTTPStatus, headers: Mapping[str, str], payload: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
