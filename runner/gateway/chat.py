"""`POST /v1/chat/completions`: check the budget, forward to the provider, relay, account, transcribe.

The agent's request body is forwarded with two changes only: an empty `model` becomes the runner's
configured model, and a streaming request gets `stream_options.include_usage` so the last chunk carries
the usage. Everything else, and the provider's answer, passes through unchanged; a stream is relayed
chunk by chunk as it arrives (and assembled on the side for the transcript).

Answers the gateway gives of its own:

- 400 the body is not a JSON object with a non-empty `messages` array; 413 it is too large;
- 429 `budget_exceeded` / `rate_limit_exceeded` (see `runner.gateway.budget`);
- 502 the provider is unreachable, timed out, answered 5xx or refused the runner's key (401/403); the
  message names the provider's URL, never the key. Other 4xx answers of the provider (bad request,
  unknown model, its own rate limit) are passed back with their status and body;
- 401 the task's session closed while the request was in flight.

Each forwarded request runs in its own asyncio task, registered with the session, so closing the
session can cancel it; the wall-time budget bounds it too. After each answer the usage (as reported,
or estimated) is added to the session's total and sent to the sink; a failing sink is logged and does
not cost the agent its answer (answering 500 would make it retry and pay twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from runner.domain.models import TokenUsage
from runner.gateway import replies
from runner.gateway import usage as usage_mod
from runner.gateway.provider import Provider, ProviderUnreachable, error_excerpt, read_limited
from runner.gateway.session import Session
from runner.gateway.sink import AgentEventSink
from runner.gateway.sse import SSEDecoder, StreamAssembler
from runner.gateway.transcript import ResponseRecord

log = logging.getLogger(__name__)

# Headers of a provider's error answer worth passing on: they tell the client when to retry.
_PASSED_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")


@dataclass(slots=True)
class _Exchange:
    """One forwarded request, as far as it got."""

    seq: int
    started: float  # monotonic
    stream: bool
    request_body: dict[str, Any]
    response: web.StreamResponse | None = None  # set once a streamed answer has begun
    assembler: StreamAssembler | None = None
    finished: bool = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class ChatForwarder:
    def __init__(self, provider: Provider, sink: AgentEventSink, default_model: str,
                 max_body_bytes: int, max_response_bytes: int) -> None:
        self._provider = provider
        self._sink = sink
        self._default_model = default_model
        self._max_body_bytes = max_body_bytes
        self._max_response_bytes = max_response_bytes

    async def handle(self, request: web.Request, session: Session) -> web.StreamResponse:
        body_or_error = await self._read_body(request)
        if isinstance(body_or_error, web.Response):
            return body_or_error
        body = body_or_error
        if not body.get("model"):
            body["model"] = self._default_model
        stream = body.get("stream") is True
        if stream:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}

        ex = _Exchange(session.next_seq(), time.monotonic(), stream, body)
        refusal = session.meter.admit()
        await session.transcript.request(ex.seq, time.time(), body)
        if refusal is not None:
            log.info("llm request refused", extra={"task_id": session.task_id, "seq": ex.seq,
                                                   "refusal": refusal.type, "reason": refusal.message})
            await session.transcript.response(ResponseRecord(
                ex.seq, time.time(), 429, ex.elapsed(), stream, error=refusal.message, note="refused by the gateway"))
            return replies.refused(refusal)

        if session.closed:  # closed while this request was being read
            return replies.unauthorized("the task's gateway session has ended")
        task: asyncio.Task[web.StreamResponse] = asyncio.create_task(self._forward(request, session, ex))
        session.inflight.add(task)
        task.add_done_callback(session.inflight.discard)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this handler itself is being cancelled (server shutting down)
            # The session was closed under the request.
            if ex.response is not None:
                return ex.response
            return replies.unauthorized("the task's gateway session has ended")

    async def _read_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return replies.error(413, f"the request body is larger than the gateway's limit of "
                                      f"{self._max_body_bytes} bytes", "invalid_request_error",
                                 "request_too_large", retry=False)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return replies.bad_request(f"the request body is not JSON: {exc}")
        if not isinstance(body, dict):
            return replies.bad_request("the request body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return replies.bad_request("'messages' must be a non-empty array", "invalid_messages")
        if "model" in body and not isinstance(body["model"], str | None):
            return replies.bad_request("'model' must be a string")
        return body

    # ---- forwarding -----------------------------------------------------------------------------------

    async def _forward(self, request: web.Request, session: Session, ex: _Exchange) -> web.StreamResponse:
        encoded = json.dumps(ex.request_body, ensure_ascii=False).encode()
        deadline = asyncio.timeout(session.meter.remaining_s())
        try:
            async with deadline, self._provider.chat(encoded, ex.stream) as upstream:
                if upstream.status != 200:
                    return await self._provider_error(session, ex, upstream)
                if ex.stream:
                    return await self._relay_stream(request, session, ex, upstream)
                return await self._relay_whole(session, ex, upstream)
        except TimeoutError as exc:
            if deadline.expired():
                refusal = session.meter.wall_time_refusal(in_flight=True)
                return await self._cut_short(session, ex, refusal.message, replies.refused(refusal))
            message = self._provider.describe(exc)
            return await self._cut_short(session, ex, message, replies.error(
                502, message, "provider_error", "provider_unreachable"))
        except ProviderUnreachable as exc:
            log.warning("llm provider unreachable", extra={"task_id": session.task_id, "seq": ex.seq,
                                                           "error": str(exc)})
            return await self._cut_short(session, ex, str(exc), replies.error(
                502, str(exc), "provider_error", "provider_unreachable"))
        except Exception as exc:
            log.exception("gateway failed to forward a request", extra={"task_id": session.task_id, "seq": ex.seq})
            message = self._provider.scrub(f"the gateway failed to forward the request: {type(exc).__name__}")
            return await self._cut_short(session, ex, message, replies.error(500, message, "server_error"))
        except asyncio.CancelledError:
            if not ex.finished:
                why = "the task's gateway session closed" if session.closed else "the gateway stopped"
                await self._record_partial(session, ex, 401 if ex.response is None else 200, f"cut short: {why}")
            raise

    async def _cut_short(self, session: Session, ex: _Exchange, reason: str,
                         answer: web.Response) -> web.StreamResponse:
        if ex.finished:  # already answered and accounted; only the tail of a stream was lost
            return ex.response or answer
        if ex.response is not None:  # the stream has begun: all we can do is end it
            await self._record_partial(session, ex, 200, f"cut short: {reason}")
            return ex.response
        await self._record_partial(session, ex, answer.status, None, error=reason)
        return answer

    async def _record_partial(self, session: Session, ex: _Exchange, status: int, note: str | None,
                              error: str | None = None) -> None:
        ex.finished = True
        message = ex.assembler.message() if ex.assembler is not None and ex.assembler.chunks else None
        usage = total = None
        estimated = False
        if ex.assembler is not None:
            usage = ex.assembler.usage
            if usage is None:
                usage, estimated = usage_mod.estimated(ex.request_body, message), True
            total = session.meter.record(usage)
        await session.transcript.response(ResponseRecord(
            ex.seq, time.time(), status, ex.elapsed(), ex.stream, message=message,
            finish_reason=ex.assembler.finish_reason if ex.assembler else None,
            usage=usage, usage_estimated=estimated, total=total, error=error, note=note))
        self._log(session, ex, status, usage)
        if usage is not None and total is not None:
            await self._report_usage(session, usage, total)

    async def _provider_error(self, session: Session, ex: _Exchange,
                              upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        try:
            raw = await read_limited(upstream, self._max_response_bytes)
        except ValueError as exc:
            raw = str(exc).encode()
        status = upstream.status
        excerpt = self._provider.scrub(error_excerpt(raw))
        url = self._provider.public_chat_url
        answer: web.Response
        if status >= 500 or status in (401, 403):
            what = "refused the runner's API key" if status in (401, 403) else "failed"
            message = f"the LLM provider at {url} {what} (HTTP {status}): {excerpt}"
            answer = replies.error(502, message, "provider_error", "provider_error")
            log.warning("llm provider error", extra={"task_id": session.task_id, "seq": ex.seq, "status": status})
        else:
            message = f"the LLM provider answered HTTP {status}: {excerpt}"
            headers = {h: upstream.headers[h] for h in _PASSED_HEADERS if h in upstream.headers}
            answer = web.Response(status=status, body=self._provider.scrub(raw.decode("utf-8", "replace")).encode(),
                                  content_type=upstream.content_type or "application/json", headers=headers)
        ex.finished = True
        await session.transcript.response(ResponseRecord(ex.seq, time.time(), answer.status, ex.elapsed(),
                                                         ex.stream, error=message))
        self._log(session, ex, answer.status, None)
        return answer

    async def _relay_whole(self, session: Session, ex: _Exchange,
                           upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        try:
            raw = await read_limited(upstream, self._max_response_bytes)
        except ValueError as exc:
            message = f"the LLM provider at {self._provider.public_chat_url} sent an answer too large: {exc}"
            return await self._cut_short(session, ex, message, replies.error(502, message, "provider_error"))
        try:
            parsed: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = None
        choices = parsed.get("choices") if isinstance(parsed, dict) else None
        if not isinstance(choices, list):
            message = (f"the LLM provider at {self._provider.public_chat_url} answered 200 with something that "
                       f"is not a chat completion: {self._provider.scrub(error_excerpt(raw, 500))}")
            return await self._cut_short(session, ex, message, replies.error(502, message, "provider_error"))
        first = choices[0] if choices and isinstance(choices[0], dict) else {}
        message_obj = first.get("message") if isinstance(first.get("message"), dict) else None
        usage = usage_mod.reported(parsed.get("usage"))
        estimated = usage is None
        if usage is None:
            usage = usage_mod.estimated(ex.request_body, message_obj)
        total = session.meter.record(usage)
        ex.finished = True
        await session.transcript.response(ResponseRecord(
            ex.seq, time.time(), 200, ex.elapsed(), False, message=message_obj,
            finish_reason=first.get("finish_reason") if isinstance(first.get("finish_reason"), str) else None,
            usage=usage, usage_estimated=estimated, total=total))
        self._log(session, ex, 200, usage)
        await self._report_usage(session, usage, total)
        return web.Response(status=200, body=raw, content_type="application/json")

    async def _relay_stream(self, request: web.Request, session: Session, ex: _Exchange,
                            upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        content_type = upstream.headers.get("Content-Type", "")
        response = web.StreamResponse(status=200, headers={
            "Content-Type": content_type if content_type.startswith("text/event-stream") else "text/event-stream",
            "Cache-Control": "no-cache"})
        await response.prepare(request)
        ex.response = response
        decoder, assembler = SSEDecoder(), StreamAssembler()
        ex.assembler = assembler
        note: str | None = None
        async for data in upstream.content.iter_any():
            for event in decoder.feed(data):
                assembler.feed(event)
            if assembler.done and not ex.finished:
                # Account before the agent sees [DONE], so its next request meets an up-to-date budget.
                await self._record_partial(session, ex, 200, None, error=assembler.error)
            try:
                await response.write(data)
            except ConnectionResetError:
                note = "cut short: the agent went away"
                break
        for event in decoder.finish():
            assembler.feed(event)
        if note is None:
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        if not ex.finished:
            await self._record_partial(session, ex, 200, note or "the provider ended the stream without [DONE]",
                                       error=assembler.error)
        return response

    # ---- reporting ------------------------------------------------------------------------------------

    async def _report_usage(self, session: Session, usage: TokenUsage, total: TokenUsage) -> None:
        try:
            await self._sink.token_usage(session.task_id, usage, total)
        except Exception:
            log.exception("the sink failed to record token usage", extra={"task_id": session.task_id})

    def _log(self, session: Session, ex: _Exchange, status: int, usage: TokenUsage | None) -> None:
        log.info("llm request", extra={
            "task_id": session.task_id, "seq": ex.seq, "status": status, "stream": ex.stream,
            "duration_ms": round(ex.elapsed() * 1000, 1),
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
        })
