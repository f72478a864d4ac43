"""What a sandbox can reach: no network, no secrets, no host files, no writes outside its folders; the
gateway socket is the one way out."""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap

import pytest
from sandbox_testing import Gateway, MakeExecutor, TcpListener, make_job, results_of

from runner.config import HomeLayout
from runner.domain.errors import InvalidArgument
from runner.domain.models import FileKind, Manifest, ManifestEntry
from runner.ports import BlobStore

pytestmark = pytest.mark.timeout(30)


def _host_ip() -> str | None:
    """The host's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return str(s.getsockname()[0])
        except OSError:
            return None


async def test_no_network_at_all(make_executor: MakeExecutor) -> None:
    listener = TcpListener()
    host_ip = _host_ip()
    try:
        executor = await make_executor()
        outcome = await executor.run(make_job(textwrap.dedent(f"""
            results["interfaces"] = [name for _, name in socket.if_nameindex()]
            def attempt(host, port):
                try:
                    with socket.create_connection((host, port), timeout=2):
                        return "connected"
                except OSError as exc:
                    return type(exc).__name__ + ": " + str(exc)
            results["host_loopback"] = attempt("127.0.0.1", {listener.port})
            results["public"] = attempt("1.1.1.1", 53)
            results["host_ip"] = attempt({host_ip!r}, {listener.port}) if {host_ip!r} else "no host ip"
            try:
                socket.getaddrinfo("example.com", 443)
                results["dns"] = "resolved"
            except OSError as exc:
                results["dns"] = type(exc).__name__
        """)))
    finally:
        listener.close()
    found = results_of(outcome)
    assert found["interfaces"] == ["lo"]
    assert found["host_loopback"].startswith("ConnectionRefusedError")  # the sandbox's own, empty lo
    assert "connected" not in (found["public"], found["host_ip"])
    assert found["dns"] == "gaierror"
    assert listener.accepted == 0


async def test_no_secrets_and_no_host_files(make_executor: MakeExecutor, home: HomeLayout,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-secret-4c1d0e7a"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("CODEX_SYS_TEST_MARKER", "host-env-marker-91b3")
    host_root_entries = sorted(os.listdir("/root")) if os.access("/root", os.R_OK) else []
    probes = {
        "home": str(home.root), "blobs": str(home.blobs), "gateway_host_path": str(home.gateway_socket),
        "shadow": "/etc/shadow", "host_home": "/home", "sys": "/sys", "var_lib": "/var/lib",
        "root_entries": [f"/root/{name}" for name in host_root_entries if name != ".pyenv"],
    }
    executor = await make_executor()
    outcome = await executor.run(make_job(textwrap.dedent(f"""
        probes = {json.dumps(probes)}
        secret, env_marker = {secret!r}, "host-env-marker-91b3"
        results["environ"] = dict(os.environ)
        leaks = []
        for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
            for name in ("environ", "cmdline"):
                try:
                    data = open(f"/proc/{{pid}}/{{name}}", "rb").read()
                except OSError:
                    continue
                if secret.encode() in data or env_marker.encode() in data:
                    leaks.append(f"/proc/{{pid}}/{{name}}")
        results["leaks"] = leaks
        results["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        results["pid1"] = open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode()
        results["exists"] = {{k: any(os.path.lexists(p) for p in v) if isinstance(v, list) else os.path.lexists(v)
                             for k, v in probes.items()}}
        results["etc"] = sorted(os.listdir("/etc"))
        results["root"] = sorted(os.listdir("/"))
    """)))
    found = results_of(outcome)
    assert set(found["environ"]) <= {"PATH", "HOME", "LANG", "TERM", "TMPDIR", "PYTHONPATH",
                                     "PYTHONDONTWRITEBYTECODE", "PWD"}
    assert secret not in json.dumps(found)
    assert found["leaks"] == []
    assert found["pid1"].endswith("bwrap")  # the sandbox's own init, not the host's
    assert len(found["pids"]) <= 4, found["pids"]
    assert not any(found["exists"].values()), found["exists"]
    assert set(found["etc"]) <= {"passwd", "group", "hosts", "nsswitch.conf", "ld.so.cache", "ld.so.conf",
                                 "ld.so.conf.d", "alternatives", "localtime", "os-release"}
    assert "home" not in found["root"]


async def test_read_only_system_and_no_privileges(make_executor: MakeExecutor) -> None:
    executor = await make_executor()
    prefix = sys.base_prefix
    outcome = await executor.run(make_job(textwrap.dedent(f"""
        def try_write(path):
            try:
                with open(path, "w") as f:
                    f.write("x")
                return "written"
            except OSError as exc:
                return exc.strerror
        outside = ["/usr/x", "/usr/bin/x", "/etc/x", "/etc/passwd", "/x", "/run/x", "/run/codex/x", "/dev/x",
                   "/var/x", "/opt/test-agents/x", {prefix!r} + "/x", "/proc/x"]
        results["outside"] = {{p: try_write(p) for p in outside}}
        inside = ["/workspace/x", "/output/x", "/tmp/x", "/tmp/home/x", "/dev/shm/x", "/var/tmp/y"]
        results["inside"] = {{p: try_write(p) for p in inside}}
        for p in inside:
            os.unlink(p)
        results["uid"], results["gid"] = os.getuid(), os.getgid()
        status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
        results["caps"] = {{k: status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs")}}
        nested = subprocess.run(["unshare", "--user", "true"], capture_output=True, text=True)
        results["nested_userns"] = nested.returncode
        results["id"] = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        results["hostname"] = socket.gethostname()
    """)))
    found = results_of(outcome)
    assert set(found["outside"].values()) <= {"Read-only file system", "Permission denied",
                                              "No such file or directory"}, found["outside"]
    assert all(v == "written" for v in found["inside"].values()), found["inside"]
    assert found["uid"] != 0 and found["gid"] != 0
    assert found["caps"] == {"CapEff": "0000000000000000", "CapPrm": "0000000000000000",
                             "CapBnd": "0000000000000000", "NoNewPrivs": "1"}
    assert found["nested_userns"] != 0
    assert found["id"] == "agent"
    assert found["hostname"] == "sandbox"


async def test_symlinks_made_inside_lead_nowhere_useful(make_executor: MakeExecutor) -> None:
    executor = await make_executor()
    outcome = await executor.run(make_job(textwrap.dedent("""
        os.symlink("/etc/shadow", "/workspace/shadow")
        os.symlink("../../../../../../root/.bashrc", "/workspace/up")
        os.symlink("/proc/1/root/etc/shadow", "/workspace/via-proc")
        def read(path):
            try:
                return open(path, "rb").read()[:50].decode()
            except OSError as exc:
                return exc.strerror
        results["reads"] = {p: read("/workspace/" + p) for p in ("shadow", "up", "via-proc")}
        open("/workspace/data", "w").write("x")
        try:
            os.link("/workspace/data", "/output/diff.patch")
            results["hardlink"] = "linked"
        except OSError as exc:
            results["hardlink"] = exc.strerror
    """)))
    found = results_of(outcome)
    assert set(found["reads"].values()) <= {"No such file or directory", "Permission denied"}, found["reads"]
    assert found["hardlink"] == "Invalid cross-device link"


async def test_a_snapshot_symlink_pointing_out_is_refused(make_executor: MakeExecutor, blobs: BlobStore,
                                                          home: HomeLayout) -> None:
    executor = await make_executor()
    target = await blobs.put_bytes("tenant-a", b"../../etc/passwd")
    manifest = Manifest((ManifestEntry("sub/escape", FileKind.SYMLINK, target),))
    with pytest.raises(InvalidArgument, match="outside the workspace"):
        await executor.run(make_job("results['ran'] = True", manifest))
    assert not [p for p in home.sandboxes.iterdir() if p.name.startswith("sb-")]


async def test_the_gateway_socket_is_the_way_out(make_executor: MakeExecutor, gateway: Gateway) -> None:
    executor = await make_executor()
    outcome = await executor.run(make_job(textwrap.dedent("""
        reply = gateway_request(b'{"model": "m", "messages": []}')
        results["reply"] = reply.decode()
        results["socket_mode"] = oct(os.stat("/run/codex/gateway.sock").st_mode)
    """)))
    found = results_of(outcome)
    assert found["reply"].startswith("HTTP/1.1 200 OK")
    requests = gateway.requests
    assert len(requests) == 1
    assert requests[0].head.startswith(b"POST /v1/chat/completions HTTP/1.1")
    assert json.loads(requests[0].body) == {"model": "m", "messages": []}

