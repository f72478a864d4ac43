"""A minimal language server over stdio for test_nvim_workspace_edit.py, which needs what no real server
can be made to do: send Neovim arbitrary workspace edits, and show the plugin's settings messages exactly
as they were sent. It records every message from the client as one JSON line in `FAKE_LSP_LOG`.

Commands (workspace/executeCommand), each answered with the client's response:

- `fake.applyEdit {edit, label?}`: sends `workspace/applyEdit`;
- `fake.configuration {section}`: sends `workspace/configuration` for the root.

Every other request is refused. The plugin's behaviour with the real server: test_nvim_plugin.py.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from typing import Any, BinaryIO

LOG = os.environ.get("FAKE_LSP_LOG", "")


def read_message(stream: BinaryIO) -> dict[str, Any] | None:
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        name, _, value = line.decode("ascii").partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("message without Content-Length")
    return json.loads(stream.read(length))


class Server:
    def __init__(self) -> None:
        self.out = sys.stdout.buffer
        self.ids = itertools.count(1)
        self.waiting: dict[int, Any] = {}  # our request id -> id of the client request to answer
        self.root = ""

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.out.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.out.flush()

    def request(self, method: str, params: Any, answer_to: Any) -> None:
        rid = next(self.ids)
        self.waiting[rid] = answer_to
        self.send({"id": rid, "method": method, "params": params})

    def log(self, message: dict[str, Any]) -> None:
        if LOG:
            with open(LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(message) + "\n")

    def handle(self, msg: dict[str, Any]) -> bool:
        self.log(msg)
        method = msg.get("method")
        if method is None:  # a response to one of our requests
            answer_to = self.waiting.pop(msg["id"], None)
            if answer_to is not None:
                self.send({"id": answer_to, "result": {"response": msg.get("result"), "error": msg.get("error")}})
            return True
        params = msg.get("params") or {}
        if method == "initialize":
            self.root = params.get("rootUri") or ""
            self.send({"id": msg["id"], "result": {
                "capabilities": {"textDocumentSync": {"openClose": True, "change": 1},
                                 "executeCommandProvider": {"commands": ["fake.applyEdit", "fake.configuration"]}},
                "serverInfo": {"name": "fake-lsp"}}})
        elif method == "shutdown":
            self.send({"id": msg["id"], "result": None})
        elif method == "exit":
            return False
        elif method == "workspace/executeCommand" and params.get("command") == "fake.applyEdit":
            arg = params["arguments"][0]
            self.request("workspace/applyEdit", {"label": arg.get("label"), "edit": arg["edit"]}, msg["id"])
        elif method == "workspace/executeCommand" and params.get("command") == "fake.configuration":
            arg = params["arguments"][0]
            self.request("workspace/configuration",
                         {"items": [{"section": arg.get("section", "codexSys"), "scopeUri": self.root}]}, msg["id"])
        elif "id" in msg:
            self.send({"id": msg["id"], "error": {"code": -32601, "message": f"no method {method}"}})
        return True


def main() -> None:
    server = Server()
    while True:
        msg = read_message(sys.stdin.buffer)
        if msg is None or not server.handle(msg):
            return


if __name__ == "__main__":
    main()
