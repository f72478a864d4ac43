"""MinIO's and urllib3's exceptions, translated into the runner's errors.

Every call to the client goes through `translate`, which keeps the original as `__cause__` and says
in the message which server and bucket were involved, and what to do:

* the object is not there (`NoSuchKey`) -> `NotFound` with the caller's description of what is missing;
* the server cannot be reached, timed out, answered 5xx or `SlowDown` -> `Unavailable`
  ("MinIO at <endpoint> ..."), a temporary error the worker retries after a delay;
* credentials or permissions refused -> `PermanentError` naming the access key and the bucket settings,
  since retrying with the same keys cannot succeed; the same for a missing bucket and a TLS
  certificate the client does not trust (naming `ca_file` and `secure`).
"""

from __future__ import annotations

import ssl

import urllib3.exceptions
from minio.error import InvalidResponseError, S3Error, ServerError

from runner.adapters.minio.settings import S3Settings
from runner.domain.errors import CodexError, FailedPrecondition, NotFound, PermanentError, Unavailable

_BUSY = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "OperationTimedOut",
                   "XMinioServerNotInitialized", "XMinioReadQuorum", "XMinioWriteQuorum", "XMinioStorageFull",
                   "XMinioBackendDown", "ServerNotInitialized"})
_DENIED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
                     "AccountProblem", "InvalidToken", "ExpiredToken", "InvalidSecurity", "XMinioAdminNotEnabled"})


def translate(exc: BaseException, settings: S3Settings, action: str, missing: str | None = None) -> CodexError:
    """The runner's error for `exc`, raised while doing `action` ("reading blob X", "listing ...").
    `missing` is the `NotFound` message when the object may legitimately be absent."""
    where = f"MinIO at {settings.endpoint}"
    if isinstance(exc, CodexError):
        return exc
    if isinstance(exc, S3Error):
        code = exc.code or ""
        if code in ("NoSuchKey", "NoSuchObject") and missing is not None:
            return NotFound(missing)
        if code == "NoSuchBucket":
            return FailedPrecondition(
                f"bucket {settings.bucket!r} (S3 setting bucket) does not exist on {where}; a runner creates it "
                "when it starts, or create it yourself")
        if code in _DENIED:
            return PermanentError(
                f"{where} refused {action} in bucket {settings.bucket!r}: {code} ({exc.message}). Check the S3 "
                f"settings access_key ({settings.access_key!r}) and secret_key, and that this key may read and "
                f"write bucket {settings.bucket!r}")
        if code == "RequestTimeTooSkewed":
            return PermanentError(f"{where} refused {action}: this machine's clock is too far from the server's; "
                                  "synchronise the clock (NTP)")
        status = exc.response.status if exc.response is not None else 0
        if code in _BUSY or status >= 500:
            delay = 2.0 if code == "SlowDown" else 1.0
            return Unavailable(f"{where} is unavailable while {action}: {code or status} ({exc.message})",
                               delay_s=delay)
        return PermanentError(f"{where} refused {action} in bucket {settings.bucket!r}: {code} ({exc.message})")
    if isinstance(exc, ServerError):
        if exc.status_code >= 500:
            return Unavailable(f"{where} is unavailable while {action}: HTTP {exc.status_code}")
        return PermanentError(f"{where} refused {action}: HTTP {exc.status_code}")
    if isinstance(exc, InvalidResponseError):
        return Unavailable(f"{where} gave an answer that is not S3 while {action} (a proxy in the way, or "
                           f"not an S3 server: check the S3 setting endpoint): {str(exc)[:300]}")
    if isinstance(exc, urllib3.exceptions.HTTPError | ssl.SSLError | OSError):
        reason = _reason(exc)
        if isinstance(reason, ssl.SSLCertVerificationError | urllib3.exceptions.SSLError) \
                and "certificate" in str(reason).lower():
            return PermanentError(
                f"TLS with {where} failed while {action}: {reason}. Check the S3 settings ca_file (the CA that "
                "signed the server's certificate) and secure")
        return Unavailable(f"{where} cannot be reached while {action}: {_short(reason)}")
    return Unavailable(f"{where} failed while {action}: {type(exc).__name__}: {_short(exc)}")


def _reason(exc: BaseException) -> BaseException:
    """The innermost cause urllib3 wraps (MaxRetryError -> NewConnectionError -> ConnectionRefusedError)."""
    seen = 0
    while seen < 5:
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            break
        exc = inner
        seen += 1
    return exc


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # urllib3 messages repeat the connection object's repr; the tail says what happened.
    if "Failed to establish a new connection:" in text:
        text = text.split("Failed to establish a new connection:", 1)[1].strip()
    return text[:300]
