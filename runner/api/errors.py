"""Mapping between the runner's errors and gRPC status codes, in both directions."""

from __future__ import annotations

import grpc

from runner.domain import errors as e

_TO_CODE: tuple[tuple[type[e.CodexError], grpc.StatusCode], ...] = (
    (e.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (e.NotFound, grpc.StatusCode.NOT_FOUND),
    (e.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (e.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (e.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (e.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (e.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (e.Conflict, grpc.StatusCode.ABORTED),
    (e.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (e.TemporaryError, grpc.StatusCode.UNAVAILABLE),
    (e.PermanentError, grpc.StatusCode.FAILED_PRECONDITION),
)

_FROM_CODE: dict[grpc.StatusCode, type[e.CodexError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: e.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: e.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: e.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: e.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: e.ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: e.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: e.PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: e.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: e.Unavailable,
}


def status_of(exc: e.CodexError) -> grpc.StatusCode:
    for cls, code in _TO_CODE:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def error_from_rpc(exc: grpc.RpcError) -> e.CodexError:
    """A client-side RpcError as the runner's own error class, the server's message kept."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = _FROM_CODE.get(code)
    message = details or code.name
    if cls is None:
        return e.PermanentError(f"{code.name}: {message}")
    if cls is e.Unavailable:
        return e.Unavailable(message)
    return cls(message)
