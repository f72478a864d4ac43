"""The runner's own errors.

Each says what went wrong in words a person can act on, and whether trying again can help: a
`TemporaryError` carries a delay (it maps onto a queue's `nak(delay)`), a `PermanentError` does not (it
maps onto `term()`). Third-party exceptions are wrapped with `raise ... from exc` so `__cause__` is kept.
The gRPC adapter maps each class onto one status code.
"""

from __future__ import annotations


class CodexError(Exception):
    """Base of every error the runner raises on purpose."""


class PermanentError(CodexError):
    """Trying again will fail the same way."""


class TemporaryError(CodexError):
    """A dependency is briefly unavailable; try again after `delay_s`."""

    def __init__(self, message: str, delay_s: float = 1.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class InvalidArgument(PermanentError):
    """The request itself is wrong (bad path, digest mismatch, empty instruction...)."""


class NotFound(PermanentError):
    pass


class AlreadyExists(PermanentError):
    pass


class FailedPrecondition(PermanentError):
    """The request is valid but not in this state (cancel of a finished task, a blob not uploaded yet)."""


class Conflict(TemporaryError):
    """A compare-and-set lost against a concurrent writer; read again and retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, delay_s=0.0)


class ResourceExhausted(PermanentError):
    """A size limit or budget was exceeded."""


class Unauthenticated(PermanentError):
    pass


class PermissionDenied(PermanentError):
    """The caller is known but its role does not allow the request."""


class Unavailable(TemporaryError):
    pass
