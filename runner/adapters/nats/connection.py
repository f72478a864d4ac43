"""`NatsConnection`: the one NATS connection a process shares between its NATS adapters.

The first connection must succeed within `NatsSettings.connect_timeout_s`, or `connect` raises
`Unavailable`; from then on the client reconnects forever (`max_reconnect_attempts=-1`, a short pause
between attempts), resubscribes its subscriptions and flushes what was buffered while it was away. The
adapters do the rest, each in the way its guarantees need: operations that must not be lost retry within
`retry_s` (`retry.retrying`), consumers that follow a stream recreate themselves from their last position.

Every change of the connection's state is logged (structured, `extra={...}`) and announced to listeners
(`on_change`): a queue receiver waiting for a delivery, or a stream reader waiting for the next message,
learns of a disconnect at once instead of at its timeout. `wait_connected` lets a retry loop sleep until
the client is back rather than spin.

Errors of nats-py never leave the adapters as such: `unavailable()` wraps one into the runner's own
`Unavailable("NATS at <url> ...")` with `__cause__` kept, and `is_transient` says which are worth a retry
(timeouts, no responders while JetStream starts, 503s, a connection being re-established).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from runner.adapters.nats.settings import NatsSettings
from runner.closing import AsyncClosing
from runner.domain.errors import Unavailable

log = logging.getLogger(__name__)

ConnectionChange = Literal["disconnected", "reconnected", "closed"]
Listener = Callable[[ConnectionChange], None]

_TRANSIENT = (
    TimeoutError,  # nats.errors.TimeoutError is one too
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.SlowConsumerError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    ConnectionError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same NATS operation again later may succeed."""
    if isinstance(exc, nats.js.errors.APIError):
        return exc.code == 503 or isinstance(exc, nats.js.errors.ServiceUnavailableError)
    return isinstance(exc, _TRANSIENT)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("closing the NATS connection failed", exc_info=task.exception())


def tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    """A client TLS context from the settings' CA and client certificate, or None without TLS."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(settings.tls_ca) if settings.tls_ca else None)
    if settings.tls_cert is not None and settings.tls_key is not None:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    return context


class NatsConnection(AsyncClosing):
    """A connected nats-py client and its JetStream context. Build with `await NatsConnection.connect()`."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self._nc = Client()
        self._js: JetStreamContext | None = None
        self._listeners: list[Listener] = []
        self._up = asyncio.Event()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self._last_error: Exception | None = None
        self._errors_while_down = 0
        self._down_since = 0.0

    @classmethod
    async def connect(cls, settings: NatsSettings) -> NatsConnection:
        """Connect, or raise `Unavailable` if no server answers within `settings.connect_timeout_s`."""
        conn = cls(settings)
        try:
            tls = tls_context(settings)
        except (OSError, ssl.SSLError) as exc:
            raise Unavailable(f"NATS TLS files cannot be used: {exc}") from exc
        try:
            async with asyncio.timeout(settings.connect_timeout_s):
                await conn._nc.connect(
                    servers=list(settings.servers), name=settings.name,
                    user=settings.user, password=settings.password, token=settings.token,
                    user_credentials=str(settings.creds_file) if settings.creds_file else None,
                    tls=tls, allow_reconnect=True, max_reconnect_attempts=-1,
                    reconnect_time_wait=settings.reconnect_wait_s,  # type: ignore[arg-type]  # a float works
                    connect_timeout=max(1, round(settings.request_timeout_s)),
                    error_cb=conn._on_error, disconnected_cb=conn._on_disconnected,
                    reconnected_cb=conn._on_reconnected, closed_cb=conn._on_closed)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await conn._nc.close()
            last = conn._last_error
            if not isinstance(exc, TimeoutError):
                reason = f"refused the connection: {exc}"
            elif last is not None:
                reason = f"did not accept a connection (last error: {type(last).__name__}: {last})"
            else:
                reason = "did not answer"
            raise Unavailable(f"NATS at {conn.url} {reason} within {settings.connect_timeout_s:g} s; is the "
                              "server running and reachable with these credentials?") from exc
        if not conn._tls_in_use():
            await conn._nc.close()
            raise Unavailable(f"NATS at {conn.url} does not offer TLS, which these settings ask for; refusing to "
                              "talk to it in plain text")
        conn._js = conn._nc.jetstream(timeout=settings.request_timeout_s)
        conn._up.set()
        log.info("connected to NATS", extra={"url": conn.url, "server_version": str(conn._nc.connected_server_version),
                                             "connection_name": settings.name})
        return conn

    # ---- what the adapters use -------------------------------------------------------------------------

    @property
    def nc(self) -> Client:
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise Unavailable(f"NATS at {self.url} is not connected yet")
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc.is_connected

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def url(self) -> str:
        """The server in use (or the first configured one), without credentials."""
        current = self._nc.connected_url
        if current is not None and current.hostname:
            return f"{current.scheme}://{current.hostname}:{current.port}"
        return self.settings.servers[0].rpartition("@")[2]

    def unavailable(self, what: str, exc: BaseException | None = None) -> Unavailable:
        """`Unavailable` for a failed NATS operation `what` ("append an event to task t1"); raise it `from exc`."""
        if self._closed:
            return Unavailable(f"cannot {what}: the NATS connection is closed")
        detail = f": {exc}" if exc is not None and str(exc) else (f" ({type(exc).__name__})" if exc else "")
        state = "" if self.connected else " (disconnected, reconnecting)"
        return Unavailable(f"NATS at {self.url}{state} could not {what}{detail}")

    def on_change(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every disconnect, reconnect and close; returns the function that stops it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return remove

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the connection to be up; True if it is."""
        if self._up.is_set() or self._closed:
            return self._up.is_set()
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    @contextlib.asynccontextmanager
    async def cut_on_disconnect(self) -> AsyncIterator[None]:
        """Run the body, but end it with `ConnectionError` as soon as the connection drops.

        nats-py leaves a request that was in flight when the connection dropped waiting for its whole
        timeout; a retry loop (`retry.retrying`) rather starts over once the client is back."""
        task = asyncio.current_task()
        assert task is not None
        cut = False

        def listener(change: ConnectionChange) -> None:
            nonlocal cut
            if change != "reconnected" and not cut:
                cut = True
                task.cancel()

        remove = self.on_change(listener)
        try:
            yield
        except asyncio.CancelledError:
            if cut and task.uncancel() == 0:  # our own cancellation, not the caller's
                raise ConnectionError(f"the connection to NATS at {self.url} dropped") from None
            raise
        finally:
            remove()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._up.clear()
        try:
            await self._nc.close()
        except Exception:  # closing a broken connection must not hide the caller's own error
            log.warning("closing the NATS connection failed", exc_info=True, extra={"url": self.url})

    # ---- nats-py callbacks -----------------------------------------------------------------------------

    def _announce(self, change: ConnectionChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("a NATS connection listener failed", extra={"change": change})

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            log.warning("NATS slow consumer: messages dropped", extra={"subject": exc.subject, "sid": exc.sid})
            return
        # While the server is away every reconnect attempt fails: the first failure is worth a warning,
        # the next ones (four a second) only at debug level.
        self._last_error = exc
        self._errors_while_down += 1
        level = logging.WARNING if self._errors_while_down == 1 else logging.DEBUG
        log.log(level, "NATS connection error", extra={"url": self.url, "error": f"{type(exc).__name__}: {exc}"})

    async def _on_disconnected(self) -> None:
        if self._closed:
            return
        self._up.clear()
        self._down_since = time.monotonic()
        log.warning("disconnected from NATS; reconnecting", extra={"url": self.url})
        self._announce("disconnected")

    def _tls_in_use(self) -> bool:
        """False when TLS was asked for and the server did not require it: nats-py then stays in plain text
        (it upgrades only when the server's INFO says `tls_required`; on 2.9 there is no TLS-first mode)."""
        if not self.settings.tls:
            return True
        info: dict[str, object] = getattr(self._nc, "_server_info", {})
        return bool(info.get("tls_required"))

    async def _on_reconnected(self) -> None:
        if not self._tls_in_use():
            log.error("NATS server reconnected to does not offer TLS; closing the connection",
                      extra={"url": self.url})
            # Not awaited here: this callback runs in nats-py's reconnect task, which closing cancels.
            self._closing = asyncio.create_task(self.close(), name="nats-close-without-tls")
            self._closing.add_done_callback(_log_failure)
            return
        self._up.set()
        down_s = round(time.monotonic() - self._down_since, 3) if self._down_since else None
        log.info("reconnected to NATS", extra={"url": self.url, "down_s": down_s,
                                                "failed_attempts": self._errors_while_down})
        self._errors_while_down = 0
        self._last_error = None
        self._announce("reconnected")

    async def _on_closed(self) -> None:
        self._up.clear()
        log.info("NATS connection closed", extra={"url": self.settings.servers[0].rpartition("@")[2]})
        self._announce("closed")
