"""The gateway: the sandbox's only channel out, an aiohttp server on a private unix socket.

The worker opens a session per task before it starts the sandbox (`open_session` returns the bearer
token the agent is given in its task spec) and closes it when the sandbox has ended (`close_session`
returns the transcript, the usage and whether a budget ran out). In between, the agent may call:

    POST /v1/chat/completions   forwarded to the provider (runner.gateway.chat)
    GET  /v1/models             the runner's configured model, so OpenAI clients that look find one
    POST /v1/agent/events       progress events, to the sink (runner.gateway.events)
    GET  /healthz               liveness, without a token

Every route but /healthz needs `Authorization: Bearer <token>` of an open session; anything else is a
401 in OpenAI's error shape. The provider settings (`LLMSettings`) live here and never reach a sandbox.
When no provider is configured, whoever composes the runner starts a `ScriptedLLMServer` and gives its
URL as `base_url`: the gateway only needs a URL.

Nothing a handler does can stop the server: sink failures are logged and answered 500, provider
failures become 502, and each forwarded request runs in a task the session owns (see `close_session`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.wire import CHAT_PATH, EVENTS_PATH, WireError
from runner.config import LLMSettings
from runner.domain.models import TokenUsage
from runner.gateway import replies
from runner.gateway.budget import Budget
from runner.gateway.chat import ChatForwarder
from runner.gateway.events import decode_events
from runner.gateway.listener import BoundSocket, bind_private_socket
from runner.gateway.provider import Provider, ProviderOptions, public_url
from runner.gateway.session import Session, SessionReport, SessionTable, check_task_id
from runner.gateway.sink import AgentEventSink
from runner.gateway.transcript import Transcript

log = logging.getLogger(__name__)

# What an agent inside the sandbox uses as its OpenAI base URL, with a unix-socket connector.
AGENT_BASE_URL = "http://localhost/v1"


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    max_body_bytes: int = 32 << 20  # a request from the agent (messages grow with the conversation)
    max_response_bytes: int = 64 << 20  # a whole (non-streamed) answer from the provider
    shutdown_timeout_s: float = 2.0
    provider: ProviderOptions = field(default_factory=ProviderOptions)


class Gateway:
    def __init__(self, settings: LLMSettings, sink: AgentEventSink, socket_path: Path, transcripts_dir: Path,
                 options: GatewayOptions | None = None) -> None:
        if not settings.base_url:
            raise ValueError("the gateway needs an LLM provider URL: set OPENAI_BASE_URL (and OPENAI_API_KEY), "
                             "or point it at a runner.scripted_llm.ScriptedLLMServer")
        self._settings = settings
        self._sink = sink
        self._socket_path = Path(socket_path)
        self._transcripts_dir = Path(transcripts_dir)
        self._options = options or GatewayOptions()
        self._provider = Provider(settings.base_url, settings.api_key, self._options.provider)
        self._chat = ChatForwarder(self._provider, sink, settings.model, self._options.max_body_bytes,
                                   self._options.max_response_bytes)
        self._sessions = SessionTable()
        self._runner: web.AppRunner | None = None
        self._bound: BoundSocket | None = None
        self._started_at = int(time.time())

    @property
    def socket_path(self) -> Path:
        return self._socket_path

    @property
    def provider_url(self) -> str:
        """The provider's chat URL without credentials, for logs and messages."""
        return self._provider.public_chat_url

    # ---- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the gateway is already started")
        await asyncio.to_thread(self._transcripts_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
        app = web.Application(client_max_size=self._options.max_body_bytes)
        app.router.add_post(CHAT_PATH, self._handle_chat)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_post(EVENTS_PATH, self._handle_events)
        app.router.add_get("/healthz", self._handle_health)
        await self._provider.start()
        runner = web.AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=self._options.shutdown_timeout_s)
        try:
            await runner.setup()
            self._bound = await bind_private_socket(self._socket_path)
            site = web.SockSite(runner, self._bound.sock)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._provider.close()
            if self._bound is not None:
                self._bound.sock.close()
                self._bound.unlink_if_ours()
                self._bound = None
            raise
        self._runner = runner
        log.info("gateway listening", extra={"socket": str(self._socket_path),
                                             "provider": public_url(self._provider.chat_url)})

    async def listen_tcp(self, host: str, port: int = 0) -> int:
        """Also listen on TCP (for sandboxes that reach the gateway over the network); returns the port."""
        if self._runner is None:
            raise RuntimeError("start the gateway first")
        before = {repr(a) for a in self._runner.addresses}
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = [a for a in self._runner.addresses if repr(a) not in before]
        log.info("gateway listening", extra={"host": host, "port": bound[0][1]})
        return int(bound[0][1])

    async def close(self) -> None:
        """Stop serving. Requests in flight are cut; sessions still open keep their transcript files
        (close sessions first to collect them)."""
        for session in self._sessions.all():
            await self._cancel_inflight(session)
        if len(self._sessions):
            log.warning("gateway closed with sessions still open", extra={"sessions": len(self._sessions)})
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._bound is not None:
            self._bound.sock.close()
            self._bound.unlink_if_ours()
            self._bound = None
        await self._provider.close()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- sessions -------------------------------------------------------------------------------------

    def open_session(self, task_id: str, tenant: str, budget: Budget) -> str:
        """Open the task's session; returns its bearer token (give it to the agent, log it nowhere)."""
        check_task_id(task_id)
        transcript = Transcript(self._transcripts_dir / f"{task_id}.llm_response.txt", task_id, tenant)
        token, _ = self._sessions.open(task_id, tenant, budget, transcript)
        log.info("gateway session opened", extra={"task_id": task_id, "tenant": tenant,
                                                  "max_requests": budget.max_requests,
                                                  "max_tokens": budget.max_tokens,
                                                  "wall_time_s": budget.wall_time_s})
        return token

    async def close_session(self, task_id: str) -> SessionReport:
        """End the task's session: its token stops working at once, requests still in flight are cut
        short (and say so in the transcript), and the report is returned. Raises `NotFound`."""
        session = self._sessions.remove(task_id)
        await self._cancel_inflight(session)
        transcript = await session.transcript.finish()
        meter = session.meter
        report = SessionReport(task_id=task_id, tenant=session.tenant, transcript=transcript, usage=meter.usage,
                               budget_exceeded=meter.exceeded, requests_refused=meter.refused)
        log.info("gateway session closed", extra={
            "task_id": task_id, "requests": meter.admitted, "refused": meter.refused,
            "prompt_tokens": meter.usage.prompt_tokens, "completion_tokens": meter.usage.completion_tokens,
            "budget_exceeded": meter.exceeded, "transcript_bytes": len(transcript)})
        return report

    def usage(self, task_id: str) -> TokenUsage | None:
        """The open session's usage so far, or None when the task has no session."""
        session = self._sessions.get(task_id)
        return session.meter.usage if session is not None else None

    @staticmethod
    async def _cancel_inflight(session: Session) -> None:
        tasks = list(session.inflight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- handlers -------------------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> Session | web.Response:
        token = replies.bearer_token(request)
        if token is None:
            return replies.unauthorized("missing bearer token: send 'Authorization: Bearer <task token>'")
        session = self._sessions.authenticate(token)
        if session is None:
            log.info("gateway refused a token", extra={"path": request.path})
            return replies.unauthorized("invalid or expired task token")
        return session

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        session = self._authenticate(request)
        if isinstance(session, web.Response):
            return session
        return await self._chat.handle(request, session)

    async def _handle_models(self, request: web.Request) -> web.Response:
        session = self._authenticate(request)
        if isinstance(session, web.Response):
            return session
        model = {"id": self._settings.model, "object": "model", "created": self._started_at,
                 "owned_by": "codex-sys"}
        return web.json_response({"object": "list", "data": [model]})

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "sessions": len(self._sessions)})

    async def _handle_events(self, request: web.Request) -> web.Response:
        session = self._authenticate(request)
        if isinstance(session, web.Response):
            return session
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return replies.error(413, f"the events body is larger than {self._options.max_body_bytes} bytes",
                                 "invalid_request_error", "request_too_large", retry=False)
        try:
            body: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return replies.bad_request(f"the events body is not JSON: {exc}")
        try:
            events = decode_events(body)
        except WireError as exc:
            return replies.bad_request(str(exc), "invalid_event")
        if session.closed:  # closed while this request was being read
            return replies.unauthorized("the task's gateway session has ended")
        try:
            await self._sink.agent_events(session.task_id, events)
        except Exception:
            log.exception("the sink failed to record agent events",
                          extra={"task_id": session.task_id, "events": len(events)})
            return replies.error(500, "the runner could not record the events; try again", "server_error")
        return web.json_response({"accepted": len(events)})
