"""`python -m agent.pod`, the agent container's entry point, as a real subprocess: it hands the agent its
spec, keeps its output as agent.log, uploads the outputs through real presigned PUTs that the runner
reads back with `read_staged`, reports a failed upload, passes the agent's exit status and SIGTERM on,
and, with the real agent behind it, completes a scripted task through the real gateway over TCP."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.pod import EXIT_UPLOAD, EXIT_USAGE
from agent.pod_log import TeeLog
from agent.pod_transfer import AGENT_LOG, UPLOAD_NAMES, Transfer
from agent.wire import AgentEvent, AgentResult, AgentTaskSpec, PhaseEvent
from runner.adapters.minio import MinioBlobStore
from runner.config import LLMSettings
from runner.domain.errors import NotFound
from runner.domain.models import TokenUsage
from runner.gateway import Budget, Gateway
from runner.scripted_llm import Scenario, ScriptedLLMServer

from .conftest import REPO_ROOT, FakeStorage, Ran, Route, program_env, run_module

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-SECRET-pod-test"
SIGNATURE = "X-Amz-Signature"

# A stand-in for the agent: reads its spec, says something on both streams, leaves outputs, exits as told.
FAKE_AGENT = textwrap.dedent("""\
    import json, os, signal, sys, time
    spec = json.loads(sys.stdin.readline())
    out = spec["output"]
    def put(name, data):
        with open(os.path.join(out, name), "w") as f:
            f.write(data)
    put("seen-spec.json", json.dumps(spec))
    print("agent: hello on stdout", flush=True)
    print("agent: hello on stderr", file=sys.stderr, flush=True)
    if sys.argv[1] == "wait":
        def stop(signum, frame):
            put("summary.md", "stopped by SIGTERM\\n")
            put("result.json", json.dumps({"status": "failed", "reason": "stopped"}))
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        put("ready", "")
        time.sleep(50)
        sys.exit(99)
    put("diff.patch", "--- a/x\\n+++ b/x\\n")
    put("prompt.txt", "the prompt\\n")
    put("summary.md", "done\\n")
    put("result.json", json.dumps({"status": "completed"}))
    put("evil.txt", "never uploaded\\n")
    os.symlink("/etc/passwd", os.path.join(out, "setup.log"))
    sys.exit(int(sys.argv[1]))
    """)


@dataclass
class Pod:
    """The folders of one agent container: the task's Secret, the workspace, the output, and the
    termination log Kubernetes would have made."""

    root: Path
    agent_script: Path = field(init=False)

    def __post_init__(self) -> None:
        for name in ("task", "workspace", "output", "tmp"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.termination_log.write_text("")
        self.agent_script = self.root / "fake_agent.py"
        self.agent_script.write_text(FAKE_AGENT)

    @property
    def termination_log(self) -> Path:
        return self.root / "termination-log"

    @property
    def output(self) -> Path:
        return self.root / "output"

    def write_task(self, spec: AgentTaskSpec, transfer: Transfer) -> None:
        (self.root / "task" / "spec.json").write_bytes(spec.to_json())
        (self.root / "task" / "transfer.json").write_bytes(transfer.to_json())

    def argv(self, agent_argument: str | None = None) -> list[str]:
        args = ["--task-dir", str(self.root / "task"), "--workspace", str(self.root / "workspace"),
                "--output", str(self.output), "--termination-log", str(self.termination_log),
                "--attempts", "3", "--backoff", "0.05", "--timeout", "5"]
        if agent_argument is not None:
            args += ["--agent-command", f"{sys.executable} {self.agent_script} {agent_argument}"]
        return args

    async def run(self, agent_argument: str | None = None, **env: str) -> Ran:
        ran = await run_module("agent.pod", *self.argv(agent_argument), env=program_env(self.root / "tmp", **env))
        for stream in (ran.stdout, ran.stderr):
            assert TOKEN not in stream and SIGNATURE not in stream and "X-Amz-Credential" not in stream
        return ran


def spec_for(task_id: str = "t-pod-test", **changes: object) -> AgentTaskSpec:
    return AgentTaskSpec(task_id=task_id, token=TOKEN, instruction="Do the scripted thing.", model="scripted",
                         workspace="/elsewhere/ws", output="/elsewhere/out", **changes)  # type: ignore[arg-type]


def staged_urls(store: MinioBlobStore, prefix: str, names: Sequence[str], expires_s: int = 120) -> dict[str, str]:
    return {name: store.upload_url(f"{prefix}/{name}", expires_s=expires_s) for name in names}


async def staged(store: MinioBlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read_staged(key)])


async def test_outputs_are_uploaded_and_the_exit_status_passed_on(store: MinioBlobStore, tmp_path: Path) -> None:
    pod = Pod(tmp_path / "pod")
    urls = staged_urls(store, "t1", [*UPLOAD_NAMES, "evil.txt"])
    pod.write_task(spec_for(), Transfer(None, urls))

    ran = await pod.run("3")

    assert ran.returncode == 3, ran.stderr
    seen = json.loads((pod.output / "seen-spec.json").read_text())
    assert (seen["workspace"], seen["output"]) == (str(pod.root / "workspace"), str(pod.output))
    assert (seen["token"], seen["task_id"]) == (TOKEN, "t-pod-test")

    for name, data in {"diff.patch": b"--- a/x\n+++ b/x\n", "prompt.txt": b"the prompt\n", "summary.md": b"done\n",
                       "result.json": b'{"status": "completed"}'}.items():
        assert await staged(store, f"t1/{name}") == data
    log = (await staged(store, f"t1/{AGENT_LOG}")).decode()
    assert "agent: hello on stdout" in log and "agent: hello on stderr" in log
    assert "agent: hello on stdout" in ran.stdout and "agent: hello on stderr" in ran.stdout

    # Never sent: a name that is not an output, and a symlink in place of an output.
    for name in ("evil.txt", "setup.log"):
        with pytest.raises(NotFound):
            await staged(store, f"t1/{name}")
    assert "URLs for names that are not outputs, not used: evil.txt" in ran.stderr
    assert "not uploaded setup.log: cannot open it" in ran.stderr

    last = ran.stderr.strip().splitlines()[-1]
    assert last == ("agent pod: the agent exited with status 3; uploaded diff.patch, prompt.txt, summary.md, "
                    "result.json, agent.log")
    assert pod.termination_log.read_text() == last


async def test_a_failed_upload_is_reported(store: MinioBlobStore, storage: FakeStorage, tmp_path: Path) -> None:
    pod = Pod(tmp_path / "pod")
    urls = staged_urls(store, "t2", ["prompt.txt", "result.json", AGENT_LOG])
    urls["diff.patch"] = store.upload_url("t2/diff.patch", expires_s=1)
    storage.routes["/summary"] = Route(failures=2)  # two 503s, then accepted
    urls["summary.md"] = storage.url("/summary")
    pod.write_task(spec_for(), Transfer(None, urls))
    await asyncio.sleep(2.1)  # the diff's link has expired

    ran = await pod.run("0")

    assert ran.returncode == EXIT_UPLOAD, ran.stderr
    last = ran.stderr.strip().splitlines()[-1]
    assert last.startswith("agent pod: the agent exited with status 0, but 1 of 5 uploads failed: diff.patch: PUT "
                           f"http://{store.settings.endpoint}/{store.settings.bucket}/staging/")
    assert "/t2/diff.patch?<signature redacted>: HTTP 403 AccessDenied: Request has expired" in last
    assert pod.termination_log.read_text() == last
    assert "uploading diff.patch failed; trying again" not in ran.stderr, "a 403 is not retried"
    assert ran.stderr.count("uploading summary.md failed; trying again") == 2
    assert storage.puts == {"/summary": b"done\n"}
    assert await staged(store, "t2/result.json") == b'{"status": "completed"}'
    with pytest.raises(NotFound):
        await staged(store, "t2/diff.patch")


async def test_uploads_that_keep_failing_give_up(storage: FakeStorage, tmp_path: Path) -> None:
    pod = Pod(tmp_path / "pod")
    storage.routes["/result"] = Route(failures=100)
    storage.routes["/log"] = Route()
    pod.write_task(spec_for(), Transfer(None, {"result.json": storage.url("/result"), AGENT_LOG: storage.url("/log")}))
    ran = await pod.run("1")
    assert ran.returncode == EXIT_UPLOAD
    last = ran.stderr.strip().splitlines()[-1]
    assert "the agent exited with status 1, but 1 of 2 uploads failed: result.json: PUT" in last
    assert "HTTP 503" in last and "gave up after 3 attempts" in last
    assert storage.requests.count("PUT /result") == 3
    assert b"agent: hello on stderr" in storage.puts["/log"]


async def test_sigterm_reaches_the_agent_which_still_leaves_its_outputs(storage: FakeStorage, tmp_path: Path) -> None:
    pod = Pod(tmp_path / "pod")
    for name in ("result", "summary", "log"):
        storage.routes[f"/{name}"] = Route()
    pod.write_task(spec_for(), Transfer(None, {"result.json": storage.url("/result"),
                                               "summary.md": storage.url("/summary"), AGENT_LOG: storage.url("/log")}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.pod", *pod.argv("wait"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=program_env(pod.root / "tmp"), cwd=REPO_ROOT)
    deadline = time.monotonic() + 20
    while not (pod.output / "ready").exists():
        assert time.monotonic() < deadline, "the agent did not start"
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 143, stderr.decode()
    assert "passing SIGTERM on to the agent" in stderr.decode()
    assert storage.puts["/summary"] == b"stopped by SIGTERM\n"
    assert json.loads(storage.puts["/result"]) == {"status": "failed", "reason": "stopped"}


async def test_an_unusable_task_folder_is_reported(tmp_path: Path) -> None:
    pod = Pod(tmp_path / "pod")
    ran = await pod.run("0")
    assert ran.returncode == EXIT_USAGE
    assert ran.stderr.strip() == f"agent pod: cannot read {pod.root / 'task' / 'spec.json'}: No such file or directory"
    assert pod.termination_log.read_text() == ran.stderr.strip()

    spec = json.loads(spec_for().to_json())
    (pod.root / "task" / "spec.json").write_text(json.dumps({**spec, "surprise": TOKEN}))
    (pod.root / "task" / "transfer.json").write_bytes(Transfer().to_json())
    ran = await pod.run("0")
    assert ran.returncode == EXIT_USAGE
    assert "task spec: unknown field(s) ['surprise']" in ran.stderr
    assert not (pod.output / "seen-spec.json").exists(), "the agent is not started"


def test_agent_log_keeps_its_head_and_tail(tmp_path: Path) -> None:
    log = TeeLog(tmp_path / "agent.log", None, head=100, tail=50)
    for i in range(100):
        log.take(f"line {i:03d}\n".encode())  # 9 bytes each
    log.finish()
    log.take(b"after the end\n")  # the console only: the file is closed
    text = (tmp_path / "agent.log").read_text()
    assert text.startswith("line 000\nline 001\n") and text.endswith("line 098\nline 099\n")
    assert f"[... {900 - 150} bytes of output omitted; 900 bytes in all ...]" in text
    assert len(text.encode()) < 100 + 50 + 80


# ---- the real agent, through the real gateway over TCP ----------------------------------------------------


@dataclass
class Sink:
    events: list[AgentEvent] = field(default_factory=list)

    async def agent_events(self, task_id: str, events: Sequence[AgentEvent]) -> None:
        self.events.extend(events)

    async def token_usage(self, task_id: str, usage: TokenUsage, total: TokenUsage) -> None:
        pass


SCENARIO = {
    "name": "pod-over-tcp",
    "steps": [
        {"tool_calls": [{"name": "read_file_content", "arguments": {"file_path": "app.py"}}],
         "expect_in_prompt": ["Greet the world"]},
        {"tool_calls": [{"name": "edit_file_content", "arguments": {
            "file_path": "app.py", "old_string": "'hello'", "new_string": "'hello, world'"}}]},
    ],
    "final": "Greeted the world.",
}


async def test_the_agent_reaches_the_gateway_over_tcp(store: MinioBlobStore, short_tmp: Path,
                                                      tmp_path: Path) -> None:
    provider = ScriptedLLMServer(Scenario.from_dict(SCENARIO), api_key="sk-provider")
    sink = Sink()
    gateway = Gateway(LLMSettings(base_url=await provider.start_tcp("127.0.0.1", 0), api_key="sk-provider",
                                  model="scripted"), sink, short_tmp / "gw.sock", short_tmp / "transcripts")
    try:
        await gateway.start()
        port = await gateway.listen_tcp("127.0.0.1", 0)
        token = gateway.open_session("t-pod-tcp", "tenant-a", Budget(requests_per_second=1000))
        pod = Pod(tmp_path / "pod")
        (pod.root / "workspace" / "app.py").write_text("print('hello')\n")
        spec = AgentTaskSpec(task_id="t-pod-tcp", token=token, instruction="Greet the world.", model="scripted",
                             gateway_socket=str(short_tmp / "no-such.sock"), gateway_url=f"http://127.0.0.1:{port}",
                             max_steps=10, command_timeout_s=20.0, setup_timeout_s=20.0)
        pod.write_task(spec, Transfer(None, staged_urls(store, "t3", UPLOAD_NAMES)))

        ran = await run_module("agent.pod", *pod.argv(), env=program_env(pod.root / "tmp"))

        assert ran.returncode == 0, ran.stderr + ran.stdout
        for stream in (ran.stdout, ran.stderr):
            assert token not in stream and SIGNATURE not in stream
        result = AgentResult.from_json(await staged(store, "t3/result.json"))
        assert (result.status, result.files_changed) == ("completed", 1)
        diff = (await staged(store, "t3/diff.patch")).decode()
        assert "-print('hello')" in diff and "+print('hello, world')" in diff
        assert await staged(store, "t3/summary.md") == b"Greeted the world."
        assert "model answered" in (await staged(store, f"t3/{AGENT_LOG}")).decode()
        assert [e.phase for e in sink.events if isinstance(e, PhaseEvent)] == ["RUNNING", "UPLOADING"]
        report = await gateway.close_session("t-pod-tcp")
        assert report.usage.prompt_tokens > 0
    finally:
        await gateway.close()
        await provider.close()
