"""A real Kubernetes control plane for tests and benchmarks, started from binaries we build ourselves.

etcd (Debian's `etcd-server`), kube-apiserver, kube-controller-manager and kube-scheduler (built by
`scripts/build_kubernetes.sh`, `make kubernetes`) and KWOK, which plays the kubelet of one fake node:
there is no container runtime here, so no container ever runs; KWOK writes the pod statuses a kubelet
would write, chosen per pod by annotations (see tests/kwok_stages.yaml and `Outcome`).

Everything listens on free loopback ports and keeps its data, certificates and logs in one folder.
The API server serves TLS with a certificate signed by a CA made for the cluster, authenticates bearer
tokens (an admin token in `system:masters`, ServiceAccount tokens from the TokenRequest API) and
authorizes with Node,RBAC; PodSecurity admission is on (as by default) and privileged containers are
refused. Like tests/servers.py this depends on nothing of pytest.

Watches: the API server runs without its watch cache by default (`watch_cache=False`), so a watch is
served by etcd and `compact()` (an etcd compaction at the current revision) makes every older
resourceVersion answer 410 Gone at once, as a long-disconnected watcher sees it in production.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servers import ServerError, ServerProcess, free_port

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.36.3"
KWOK_VERSION = "v0.8.0"
STAGES_FILE = Path(__file__).with_name("kwok_stages.yaml")
NODE_NAME = "kwok-node-0"
# The annotation KWOK (--manage-nodes-with-annotation-selector) looks for on the nodes it plays.
NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class Outcome:
    """Pod annotations read by tests/kwok_stages.yaml."""

    KEY = "kwok.codex-sys.dev/outcome"
    DELAY_MS = "kwok.codex-sys.dev/delay-ms"
    CONTAINER = "kwok.codex-sys.dev/container"
    SUCCEED = "succeed"
    FAIL = "fail"
    OOM = "oom"
    IMAGE_PULL = "image-pull"
    RUN = "run"
    EVICT = "evict"


class KubeApiError(ServerError):
    """An API request answered with an HTTP error; `status` is the HTTP status, `body` the decoded answer
    (a metav1.Status for API errors)."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.body = body


def kubernetes_bin_dir() -> Path:
    explicit = os.environ.get("CODEX_SYS_KUBERNETES_BIN")
    if explicit:
        return Path(explicit)
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    return Path(gopath) / "bin" / f"kubernetes-{KUBERNETES_VERSION}"


def find_kubernetes_binary(name: str) -> str:
    path = kubernetes_bin_dir() / name
    if not os.access(path, os.X_OK):
        raise ServerError(f"{name} is not built at {path}; run `make kubernetes` (scripts/build_kubernetes.sh)")
    return str(path)


def find_etcd() -> str:
    for candidate in ("/usr/bin/etcd", shutil.which("etcd")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerError("etcd is not installed; run `make system-deps` (Debian package etcd-server)")


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServerError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def make_certificates(folder: Path, hosts: list[str], ips: list[str]) -> None:
    """ca.crt/ca.key, a serving certificate apiserver.crt/apiserver.key for `hosts` and `ips`, and the
    ServiceAccount token signing key sa.key (public half sa.pub), all P-256 (fast to make).
    `cryptography` is not a project dependency, the openssl CLI is everywhere."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.cnf").write_text(
        "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = ext\n"
        "[dn]\nCN = codex-sys test cluster CA\n"
        "[ext]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n")
    sans = ", ".join([*(f"DNS:{h}" for h in hosts), *(f"IP:{ip}" for ip in ips)])
    (folder / "apiserver.ext").write_text(
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid, issuer\n"
        f"subjectAltName = {sans}\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", "-config", "ca.cnf", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
             cwd=folder)
    _openssl("req", "-new", *ec, "-subj", "/CN=kube-apiserver", "-keyout", "apiserver.key", "-out", "apiserver.csr",
             cwd=folder)
    _openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial",
             str(secrets.randbits(63)), "-days", "7", "-extfile", "apiserver.ext", "-out", "apiserver.crt", cwd=folder)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", "sa.key", cwd=folder)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)
    for key in ("ca.key", "apiserver.key", "sa.key"):
        (folder / key).chmod(0o600)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Calls `check` every 50 ms until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise ServerError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)
    return value


def _http_ok(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=1.0, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class _Component(ServerProcess):
    """One control-plane process: its command line and when it counts as ready."""

    def __init__(self, name: str, workdir: Path, argv: list[str], ready: Callable[[], bool],
                 env: dict[str, str] | None = None) -> None:
        super().__init__(name, workdir)
        self.argv = argv
        self.ready = ready
        self.env = env

    def spawn(self) -> None:
        self._spawn(self.argv, env=self.env)

    def wait_ready(self) -> None:
        self._wait_ready(self.ready)

    def start(self) -> _Component:
        self.spawn()
        self.wait_ready()
        return self


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + KWOK with one fake node.

    `start()` returns when the API server is ready, the controller manager and the scheduler are healthy
    and the node is Ready without taints; `startup_s` says how long that took. `server`, `ca_file` and
    `admin_token` (or `kubeconfig`, written for the admin) are what a client needs.
    """

    def __init__(self, workdir: Path, *, watch_cache: bool = False) -> None:
        self.workdir = workdir
        self.watch_cache = watch_cache
        self.admin_token = secrets.token_hex(24)
        self.node_name = NODE_NAME
        self.etcd_port = free_port()
        self.port = free_port()
        self.certs = workdir / "pki"
        self.ca_file = self.certs / "ca.crt"
        self.kubeconfig = workdir / "admin.kubeconfig"
        self.startup_s = 0.0
        self.components: list[_Component] = []
        self._context: ssl.SSLContext | None = None

    # ---- endpoints --------------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context(cafile=str(self.ca_file))
        return self._context

    # ---- life cycle -------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        began = time.monotonic()
        binaries = {name: find_kubernetes_binary(name)
                    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")}
        etcd = find_etcd()
        if not STAGES_FILE.is_file():
            raise ServerError(f"the KWOK stages are missing: {STAGES_FILE}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        make_certificates(self.certs, ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                       "kubernetes.default.svc.cluster.local"], ["127.0.0.1", "10.96.0.1"])
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},codex-sys-admin,codex-sys-admin,"system:masters"\n')
        tokens.chmod(0o600)
        self.write_kubeconfig(self.kubeconfig, self.admin_token)
        try:
            self._start_all(etcd, binaries)
        except BaseException as exc:
            tails = self.log_tails()
            self.stop()
            if isinstance(exc, ServerError):
                raise ServerError(f"the Kubernetes control plane did not start: {exc}\n{tails}") from exc
            raise
        self.startup_s = time.monotonic() - began
        log.info("kubernetes control plane started",
                 extra={"server": self.server, "startup_s": round(self.startup_s, 2), "workdir": str(self.workdir)})
        return self

    def _start_all(self, etcd: str, binaries: dict[str, str]) -> None:
        peer_port = free_port()
        etcd_component = self._component("etcd", [
            etcd, "--name", "codex-sys-test", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"codex-sys-test=http://127.0.0.1:{peer_port}",
            "--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr",
        ], lambda: _http_ok(f"{self.etcd_url}/health"))
        etcd_component.start()
        certs = self.certs
        apiserver = self._component("kube-apiserver", [
            binaries["kube-apiserver"], f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={self.port}", "--advertise-address=127.0.0.1",
            # Endpoints of the `kubernetes` Service may not be loopback addresses, and nothing in the
            # cluster dials the API server through that Service.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={certs / 'apiserver.crt'}", f"--tls-private-key-file={certs / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}", f"--token-auth-file={self.workdir / 'tokens.csv'}",
            # The controller manager and the scheduler read the front-proxy CA from the cluster to
            # authenticate their own callers; without one they log an error every few seconds.
            f"--requestheader-client-ca-file={self.ca_file}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={certs / 'sa.pub'}", f"--service-account-signing-key-file={certs / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # The default admission plugins (PodSecurity among them) plus NodeRestriction, as clusters run.
            "--enable-admission-plugins=NodeRestriction", "--allow-privileged=false",
            f"--watch-cache={'true' if self.watch_cache else 'false'}",
            "--profiling=false", f"--cert-dir={self.workdir / 'apiserver'}", "--v=1",
        ], lambda: _http_ok(f"{self.server}/readyz", self.ssl_context, self.admin_token))
        apiserver.start()
        # The node first, so that KWOK finds it and the scheduler sees it from its first list.
        self._create_node()
        insecure = ssl.create_default_context()
        # The controller manager and the scheduler serve /healthz with a self-signed certificate.
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        kcm_port, scheduler_port = free_port(), free_port()
        kube = str(self.kubeconfig)
        controller_manager = self._component("kube-controller-manager", [
            binaries["kube-controller-manager"], f"--kubeconfig={kube}",
            f"--authentication-kubeconfig={kube}", f"--authorization-kubeconfig={kube}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", "--leader-elect=false",
            "--controllers=*", f"--service-account-private-key-file={certs / 'sa.key'}",
            f"--root-ca-file={self.ca_file}", f"--cert-dir={self.workdir / 'kube-controller-manager'}", "--v=1",
        ], lambda: _http_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure))
        scheduler = self._component("kube-scheduler", [
            binaries["kube-scheduler"], f"--kubeconfig={kube}",
            f"--authentication-kubeconfig={kube}", f"--authorization-kubeconfig={kube}",
            "--bind-address=127.0.0.1", f"--secure-port={scheduler_port}", "--leader-elect=false",
            f"--cert-dir={self.workdir / 'kube-scheduler'}", "--v=1",
        ], lambda: _http_ok(f"https://127.0.0.1:{scheduler_port}/readyz", insecure))
        kwok_home = self.workdir / "kwok-home"
        kwok_home.mkdir(exist_ok=True)
        kwok = self._component("kwok", [
            binaries["kwok"], f"--kubeconfig={kube}", f"--config={STAGES_FILE}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={'='.join(NODE_ANNOTATION)}",
            "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16", "--node-ip=10.0.0.10",
        ], self._node_ready,
            # KWOK also reads ~/.kwok/kwok.yaml when it exists: keep a developer's own out of the tests.
            env={**os.environ, "HOME": str(kwok_home)})
        for component in (controller_manager, scheduler, kwok):
            component.spawn()
        for component in (controller_manager, scheduler, kwok):
            component.wait_ready()

    def _component(self, name: str, argv: list[str], ready: Callable[[], bool],
                   env: dict[str, str] | None = None) -> _Component:
        component = _Component(name, self.workdir, argv, ready, env)
        self.components.append(component)
        return component

    def stop(self) -> None:
        """Stops every process, the last started first. The folder stays (logs); its owner removes it."""
        for component in reversed(self.components):
            component.stop()

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(f"--- {c.name} ({c.log_path}):\n{c.log_tail(lines)}" for c in self.components)

    # ---- API access -------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, *, token: str | None = None,
            content_type: str = "application/json", timeout: float = 10.0) -> Any:
        """One request to the API server as the admin (or `token`); the decoded JSON answer. An HTTP error
        raises KubeApiError with its status and metav1.Status."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token or self.admin_token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(f"{self.server}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                answer: Any = json.loads(raw)
            except ValueError:
                answer = raw.decode(errors="replace")
            raise KubeApiError(method, path, err.code, answer) from None
        return json.loads(raw) if raw else None

    def write_kubeconfig(self, path: Path, token: str) -> Path:
        """A kubeconfig for this cluster that authenticates with `token` (JSON, which is YAML too)."""
        name = "codex-sys-test"
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": name,
                          "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def service_account_token(self, namespace: str, name: str, expiration_s: int = 3600) -> str:
        """A bound token of ServiceAccount `namespace/name` from the TokenRequest API."""
        answer = self.api("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_s},
        })
        return str(answer["status"]["token"])

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """Creates namespace `name` and waits for its `default` ServiceAccount (made by the controller
        manager), without which the API server refuses pods that do not name another one."""
        namespace: dict[str, Any] = self.api("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}},
        })
        wait_for(lambda: self._exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
                 f"the default ServiceAccount of namespace {name}")
        return namespace

    def compact(self) -> int:
        """Compacts etcd at its current revision and returns that revision: a watch (with the watch cache
        off, the default) from any older resourceVersion now answers 410 Gone."""
        status = self._etcd("/v3/maintenance/status", {})
        revision = int(status["header"]["revision"])
        self._etcd("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    # ---- internals --------------------------------------------------------------------------------

    def _etcd(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def _exists(self, path: str) -> bool:
        try:
            self.api("GET", path)
        except KubeApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    def _create_node(self) -> None:
        resources = {"cpu": "64", "memory": "256Gi", "ephemeral-storage": "1Ti", "pods": "250"}
        self.api("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "annotations": {NODE_ANNOTATION[0]: NODE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                           "kubernetes.io/arch": "amd64", "type": "kwok"},
            },
            "status": {"allocatable": resources, "capacity": resources},
        })

    def _node_ready(self) -> bool:
        """KWOK marked the node Ready and the node lifecycle controller lifted the not-ready taint that
        admission puts on every new node."""
        node = self.api("GET", f"/api/v1/nodes/{urllib.parse.quote(self.node_name)}")
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
        return ready and not node["spec"].get("taints")
