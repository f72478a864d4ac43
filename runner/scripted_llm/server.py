"""The scripted model's HTTP server: an OpenAI-compatible endpoint that follows a `Scenario`.

It serves `POST /v1/chat/completions` (streaming and not) and `GET /v1/models`, on TCP and/or a unix
socket, from one aiohttp application. Each request is recorded (`server.requests`) with its headers and
parsed body, so tests can check what reached the "provider" (say, that the gateway sent the provider key
and not the agent's token).

Model names pick scenarios: `ScriptedLLMServer(scenarios={"fixer": s1}, default=s0)` answers requests
for model `fixer` from `s1` and any other model from `s0`; with no default, an unknown model gets the
404 `model_not_found` error OpenAI sends. With `api_key`, requests must carry `Authorization: Bearer
<api_key>` (401 otherwise), as a real provider does.

The only state kept across requests is the count of failures a step with `error.times` has given.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from runner.closing import AsyncClosing
from runner.scripted_llm import completions
from runner.scripted_llm.scenario import Scenario

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "scripted"
MAX_BODY_BYTES = 64 << 20


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    monotonic: float
    wall_time: float
    status: int = 0  # filled in once answered; 0 while in flight

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(slots=True)
class _StepFailures:
    counts: dict[tuple[str, int], int] = field(default_factory=dict)

    def take(self, scenario: str, step: int, times: int | None) -> bool:
        """Whether this request at `step` should fail; counts it if so."""
        if times is None:
            return True
        key = (scenario, step)
        used = self.counts.get(key, 0)
        if used >= times:
            return False
        self.counts[key] = used + 1
        return True


class ScriptedLLMServer(AsyncClosing):
    """An OpenAI-compatible server that answers from scenarios. Use `async with` or start/close."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        scenarios: Mapping[str, Scenario] | None = None,
        default: Scenario | None = None,
        api_key: str | None = None,
        shutdown_timeout_s: float = 1.0,
    ) -> None:
        if scenario is not None and default is not None:
            raise ValueError("give the default scenario once: either positionally or as default=")
        self._default = scenario or default
        self._scenarios = dict(scenarios or {})
        if self._default is None and not self._scenarios:
            raise ValueError("a ScriptedLLMServer needs a scenario")
        self._api_key = api_key
        self._shutdown_timeout_s = shutdown_timeout_s
        self._recordings: list[RecordedRequest] = []
        self._failures = _StepFailures()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._started_at = int(time.time())

    # ---- lifecycle ------------------------------------------------------------------------------------

    async def _app_runner(self) -> web.AppRunner:
        if self._runner is None:
            app = web.Application(client_max_size=MAX_BODY_BYTES)
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_get("/v1/models", self._models)
            # Closing waits this long for answers in flight (a delayed step) before cancelling them.
            runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                   shutdown_timeout=self._shutdown_timeout_s)
            await runner.setup()
            self._runner = runner
        return self._runner

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on TCP; returns the base URL to give an OpenAI client, `http://HOST:PORT/v1`."""
        runner = await self._app_runner()
        before = set(map(repr, runner.addresses))
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = [a for a in runner.addresses if repr(a) not in before]
        bound_port = bound[0][1]
        url_host = f"[{host}]" if ":" in host else host
        base_url = f"http://{url_host}:{bound_port}/v1"
        log.info("scripted LLM listening", extra={"url": base_url})
        return base_url

    async def start_unix(self, path: str | Path) -> str:
        """Listen on a unix socket; returns the base URL to use with a unix-socket connector."""
        runner = await self._app_runner()
        site = web.UnixSite(runner, str(path))
        await site.start()
        log.info("scripted LLM listening", extra={"socket": str(path)})
        return "http://localhost/v1"

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ---- what was asked -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order, with the status it was answered with."""
        return list(self._recordings)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # ---- handlers -------------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        monotonic, wall = time.monotonic(), time.time()
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        recording = RecordedRequest(request.method, request.path, headers, body, monotonic, wall)
        self._recordings.append(recording)
        return recording

    def _error(self, recording: RecordedRequest, status: int, message: str, type_: str,
               code: str | None = None, param: str | None = None) -> web.Response:
        recording.status = status
        return web.json_response(completions.error_body(message, type_, code, param), status=status)

    def _authorized(self, request: web.Request) -> bool:
        if self._api_key is None:
            return True
        return request.headers.get("Authorization", "") == f"Bearer {self._api_key}"

    async def _models(self, request: web.Request) -> web.Response:
        recording = await self._record(request)
        if not self._authorized(request):
            return self._error(recording, 401, "Incorrect API key provided.", "invalid_request_error",
                               "invalid_api_key")
        names = list(self._scenarios) + ([DEFAULT_MODEL_ID] if self._default is not None else [])
        recording.status = 200
        return web.json_response({
            "object": "list",
            "data": [{"id": n, "object": "model", "created": self._started_at, "owned_by": "codex-sys"}
                     for n in names],
        })

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        recording = await self._record(request)
        if not self._authorized(request):
            return self._error(recording, 401, "Incorrect API key provided.", "invalid_request_error",
                               "invalid_api_key")
        body = recording.body
        if not isinstance(body, dict):
            return self._error(recording, 400, "The request body must be a JSON object.", "invalid_request_error")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._error(recording, 400, "you must provide a model parameter", "invalid_request_error",
                               param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(recording, 400, "'messages' must be a non-empty array", "invalid_request_error",
                               param="messages")
        scenario = self._scenarios.get(model, self._default)
        if scenario is None:
            return self._error(recording, 404,
                               f"The model `{model}` does not exist or you do not have access to it.",
                               "invalid_request_error", "model_not_found")

        index = completions.assistant_turns(messages)
        step = scenario.step(index)
        if step is not None and step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step is not None and step.expect_in_prompt:
            text = "\n".join(completions.prompt_texts(messages))
            for wanted in step.expect_in_prompt:
                if wanted not in text:
                    log.info("scripted LLM expectation failed", extra={"scenario": scenario.name, "step": index})
                    return self._error(
                        recording, 400,
                        f"scenario {scenario.name!r} step {index} expects {wanted!r} in the prompt, "
                        "but no message contains it", "invalid_request_error", "expectation_failed")
        if step is not None and step.error is not None and self._failures.take(scenario.name, index,
                                                                                  step.error.times):
            type_ = "server_error" if step.error.status >= 500 else "invalid_request_error"
            return self._error(recording, step.error.status, step.error.message, type_)

        if step is None:
            content: str | None = scenario.final
            calls: tuple[Any, ...] = ()
        else:
            content = step.content
            calls = tuple((f"call_{index}_{i}", c) for i, c in enumerate(step.tool_calls))
        answer = completions.Answer(
            completion_id=f"chatcmpl-scripted{next(self._ids):08d}",
            created=int(time.time()),
            model=model,
            content=content,
            tool_calls=calls,
            prompt_tokens=completions.prompt_tokens(body),
        )
        if not body.get("stream"):
            recording.status = 200
            return web.json_response(completions.completion(answer, scenario.report_usage))
        return await self._stream(request, recording, answer, scenario,
                                  step.chunk_delay_s if step is not None else 0.0, body)

    async def _stream(self, request: web.Request, recording: RecordedRequest, answer: completions.Answer,
                      scenario: Scenario, chunk_delay_s: float, body: dict[str, Any]) -> web.StreamResponse:
        options = body.get("stream_options")
        include_usage = (scenario.report_usage and isinstance(options, dict)
                         and options.get("include_usage") is True)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        recording.status = 200
        await response.prepare(request)
        try:
            for i, chunk in enumerate(completions.chunks(answer, scenario.stream_chunk_chars, include_usage)):
                if i and chunk_delay_s:
                    await asyncio.sleep(chunk_delay_s)
                await response.write(b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            log.debug("scripted LLM client went away mid-stream", extra={"id": answer.completion_id})
        return response
