"""A test agent for sandbox tests: runs the task's instruction as Python code inside the sandbox.

Started like the real agent (warm: imports done, then blocked on one line of stdin). The instruction
sees `spec` (the decoded task spec), `started_at` (wall clock when this process started), `results`
(a dict written to /output/result.json at the end, when not empty), `argv` and the modules imported
here. An exception's traceback is reported as `results["error"]`. `gateway_request(body)` sends one
HTTP request to the gateway socket and returns the response bytes.

The first command-line argument is a marker that tests use to find the sandbox's processes on the host.
"""

import json
import os
import socket
import subprocess
import sys
import time
import traceback

GATEWAY = "/run/codex/gateway.sock"
STARTED_AT = time.time()  # before the task spec arrives: earlier than run() for a warm sandbox


def gateway_request(body: bytes = b"{}", path: str = "/v1/chat/completions") -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(GATEWAY)
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: gateway\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def main() -> int:
    line = sys.stdin.buffer.readline()
    spec = json.loads(line)
    results: dict[str, object] = {}
    scope = {"spec": spec, "results": results, "argv": sys.argv, "gateway_request": gateway_request,
             "started_at": STARTED_AT, "spec_read_at": time.time(),
             "json": json, "os": os, "socket": socket, "subprocess": subprocess, "sys": sys, "time": time}
    try:
        exec(compile(spec["instruction"], "<instruction>", "exec"), scope)
    except Exception:
        results["error"] = traceback.format_exc()
        results.setdefault("exit_code", 1)
    finally:
        if results:
            with open("/output/result.json", "w") as f:
                json.dump(results, f)
    code = results.get("exit_code", 0)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
