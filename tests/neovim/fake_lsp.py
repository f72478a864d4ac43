"""A minimal language server over stdio for the Neovim tests that need to see exactly what the client
sends and answers: it records every message from the client as one JSON line in `FAKE_LSP_LOG`.

Commands (workspace/executeCommand):

- `fake.applyEdit {edit, label?}`: sends `workspace/applyEdit` and answers with the client's response;
- `fake.configuration {section}`: sends `workspace/configuration` and answers with the client's response;
- `fake.progress {token, values}`: creates the work-done progress `token`, sends each value as
  `$/progress`, then answers `{}`;
- `codexSys.runTask`: answers `{taskId: "fake-<n>", folder}`; `codexSys.listTasks`: the tasks run so far;
- any other command: answers `{command, arguments}`.
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
        self.tasks: list[dict[str, Any]] = []
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
                f.write(json.dumps({"pid": os.getpid(), **message}) + "\n")

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
            commands = ["fake.applyEdit", "fake.configuration", "fake.progress", "codexSys.runTask",
                        "codexSys.listTasks", "codexSys.applyTask", "codexSys.discardTask", "codexSys.cancelTask",
                        "codexSys.showDiff"]
            self.send({"id": msg["id"], "result": {
                "capabilities": {"textDocumentSync": {"openClose": True, "change": 1},
                                 "executeCommandProvider": {"commands": commands}},
                "serverInfo": {"name": "fake-lsp"}}})
        elif method == "shutdown":
            self.send({"id": msg["id"], "result": None})
        elif method == "exit":
            return False
        elif method == "workspace/executeCommand":
            self.execute(msg["id"], params.get("command"), (params.get("arguments") or [None])[0])
        elif "id" in msg:
            self.send({"id": msg["id"], "error": {"code": -32601, "message": f"no method {method}"}})
        return True

    def execute(self, rid: Any, command: str, arg: Any) -> None:
        if command == "fake.applyEdit":
            self.request("workspace/applyEdit", {"label": arg.get("label"), "edit": arg["edit"]}, rid)
        elif command == "fake.configuration":
            self.request("workspace/configuration",
                         {"items": [{"section": arg.get("section", "codexSys"), "scopeUri": self.root}]}, rid)
        elif command == "fake.progress":
            self.request("window/workDoneProgress/create", {"token": arg["token"]}, None)
            for value in arg["values"]:
                self.send({"method": "$/progress", "params": {"token": arg["token"], "value": value}})
            self.send({"id": rid, "result": {}})
        elif command == "codexSys.runTask":
            if not (arg or {}).get("instruction", "").strip():
                self.send({"id": rid, "error": {"code": -32602, "message": "the instruction is blank"}})
                return
            task = {"taskId": f"fake-{len(self.tasks) + 1}", "instruction": arg["instruction"], "state": "QUEUED",
                    "reason": "", "folder": self.root, "createdAt": "", "filesChanged": 0, "changes": 0,
                    "applicable": 0}
            self.tasks.insert(0, task)
            self.send({"id": rid, "result": {"taskId": task["taskId"], "folder": self.root}})
        elif command == "codexSys.listTasks":
            self.send({"id": rid, "result": {"tasks": self.tasks}})
        elif command == "codexSys.showDiff":
            self.send({"id": rid, "result": {"taskId": arg["taskId"], "uri": "file:///nowhere/diff.patch",
                                             "diff": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n"}})
        else:
            self.send({"id": rid, "result": {"command": command, "arguments": arg}})


def main() -> None:
    server = Server()
    while True:
        msg = read_message(sys.stdin.buffer)
        if msg is None or not server.handle(msg):
            return


if __name__ == "__main__":
    main()
