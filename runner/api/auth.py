"""Who is calling and whether they may: the gRPC side of `runner.auth`.

Every `codex.runner.v1.Runner` method names the `Action` it needs in `METHOD_ACTIONS`; a method missing
from the table is refused (a test walks the service descriptor so a new RPC cannot ship without an entry).
`AuthInterceptor` decides before any handler runs: UNAUTHENTICATED for a missing, malformed, unknown,
expired or revoked token, PERMISSION_DENIED when the token's roles do not grant the action, each answered
by a handler of the method's own streaming shape. An admitted call's handler runs with its `Principal` in
a context variable, read by the servicer through `caller()`.

Listeners: on TCP a `TokenBook` names the caller; on the embedded runner's 0600 unix socket (no book)
the caller is the local tenant with the member role. Health checks and reflection are open, as load
balancers and grpcurl expect. Refusals are logged with the method, the reason and the token id (a
fingerprint), never the token.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from runner._proto.codex.runner.v1 import runner_pb2 as pb
from runner.auth.principal import LOCAL_PRINCIPAL, Action, Principal, require
from runner.auth.tokens import TokenBook
from runner.domain.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["Runner"].full_name
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

METHOD_ACTIONS: dict[str, Action] = {
    "FindMissingBlobs": Action.SUBMIT,
    "UploadBlobs": Action.SUBMIT,
    "CreateTask": Action.SUBMIT,
    "GetTask": Action.READ,
    "ListTasks": Action.READ,
    "WatchTask": Action.READ,
    "GetArtifact": Action.READ,
    "GetArtifactLink": Action.READ,
    "GetTaskPageLink": Action.READ,
    "CancelTask": Action.CANCEL,
    "CreatePullRequest": Action.PULL_REQUEST,
}

_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("runner_api_caller")


def caller() -> Principal:
    """The principal of the call being handled (set by `AuthInterceptor`)."""
    try:
        return _CALLER.get()
    except LookupError:
        # Fail closed: a handler reached without the interceptor serves no one.
        raise Unauthenticated("this call was not authenticated") from None


class Authenticator:
    """Call metadata → `Principal`. Without a token book every caller is the local tenant: only for the
    0600 unix socket of the embedded runner."""

    def __init__(self, book: TokenBook | None = None) -> None:
        self.book = book

    def principal(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        if self.book is None:
            return LOCAL_PRINCIPAL
        values = [v for k, v in metadata or () if k.lower() == "authorization"]
        if len(values) > 1:
            raise Unauthenticated("malformed authorization; send one 'authorization: Bearer <token>'")
        value = values[0] if values else None
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        return self.book.identify(value)


def _shaped(shape: grpc.RpcMethodHandler, behavior: Callable[..., Any]) -> grpc.RpcMethodHandler:
    kw = {"request_deserializer": shape.request_deserializer, "response_serializer": shape.response_serializer}
    if shape.request_streaming and shape.response_streaming:
        return grpc.stream_stream_rpc_method_handler(behavior, **kw)
    if shape.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behavior, **kw)
    if shape.response_streaming:
        return grpc.unary_stream_rpc_method_handler(behavior, **kw)
    return grpc.unary_unary_rpc_method_handler(behavior, **kw)


def _inner(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    return (handler.unary_unary or handler.unary_stream or handler.stream_unary  # type: ignore[no-any-return]
            or handler.stream_stream)


def _deny(code: grpc.StatusCode, message: str, shape: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def abort(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    return _shaped(shape, abort)


def _admit(handler: grpc.RpcMethodHandler, principal: Principal) -> grpc.RpcMethodHandler:
    """The handler, run with `principal` as the caller."""
    inner = _inner(handler)
    if handler.response_streaming:
        async def stream(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            _CALLER.set(principal)
            async for item in inner(request, context):
                yield item
        return _shaped(handler, stream)

    async def unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        _CALLER.set(principal)
        return await inner(request, context)
    return _shaped(handler, unary)


class AuthInterceptor(aio.ServerInterceptor):
    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        service, _, name = method.lstrip("/").partition("/")
        action = METHOD_ACTIONS.get(name) if service == SERVICE else None
        if action is None:
            log.error("call refused: no access rule for the method", extra={"method": method})
            return _deny(grpc.StatusCode.PERMISSION_DENIED, f"{method} has no access rule; it is refused", handler)
        principal: Principal | None = None
        try:
            principal = self._auth.principal(list(handler_call_details.invocation_metadata or ()))
            require(principal, action)
        except Unauthenticated as exc:
            log.info("call refused", extra={"method": name, "code": "UNAUTHENTICATED", "reason": str(exc)})
            return _deny(grpc.StatusCode.UNAUTHENTICATED, str(exc), handler)
        except PermissionDenied as exc:
            assert principal is not None
            log.info("call refused", extra={"method": name, "code": "PERMISSION_DENIED", "tenant": principal.tenant,
                                            "token_id": principal.token_id})
            return _deny(grpc.StatusCode.PERMISSION_DENIED, str(exc), handler)
        return _admit(handler, principal)
