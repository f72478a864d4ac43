"""Who is calling: bearer tokens on TCP, the local tenant on the embedded runner's unix socket.

A token file holds one `TOKEN TENANT` pair per line (`#` comments allowed). Tokens are compared in
constant time and never logged. The interceptor refuses a call without a valid token before any handler
runs, answering UNAUTHENTICATED with a handler of the same streaming shape as the method.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from runner.domain.errors import InvalidArgument, Unauthenticated

LOCAL_TENANT = "local"
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Health checks and reflection are open, as load balancers and grpcurl expect.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def load_token_file(path: Path) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not _TENANT.match(parts[1]) or len(parts[0]) < 16:
            raise InvalidArgument(f"{path}:{n}: expected 'TOKEN TENANT' (token of 16+ characters, "
                                  "tenant of lowercase letters, digits, '-' or '_')")
        tokens[parts[0]] = parts[1]
    return tokens


class Authenticator:
    """Maps call metadata to a tenant. With no tokens configured every caller is the local tenant
    (used only on the 0600 unix socket of the embedded runner)."""

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        self._tokens = dict(tokens or {})

    @property
    def open(self) -> bool:
        return not self._tokens

    def tenant(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
        if self.open:
            return LOCAL_TENANT
        header = ""
        for key, value in metadata or ():
            if key.lower() == "authorization":
                header = value.decode() if isinstance(value, bytes) else value
        if not header:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("malformed authorization metadata; expected 'Bearer <token>'")
        for known, tenant in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return tenant
        raise Unauthenticated("the token is not valid for this runner")

    def tenant_of(self, context: aio.ServicerContext[Any, Any]) -> str:
        md = context.invocation_metadata()
        return self.tenant([(k, v) for k, v in md] if md else None)


def _deny(message: str, shape: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def abort(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if shape.request_streaming and shape.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if shape.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if shape.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


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
        if handler is None or self._auth.open or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        try:
            self._auth.tenant(list(handler_call_details.invocation_metadata or ()))
        except Unauthenticated as exc:
            return _deny(str(exc), handler)
        return handler
