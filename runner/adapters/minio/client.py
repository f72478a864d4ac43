"""The MinIO client, its connection pool and its threads: how every S3 request is made.

The `minio` client is synchronous. Each call runs in the store's own `ThreadPoolExecutor` (`threads`
wide, 16 by default) rather than in asyncio's default executor, which has only `cpu_count + 4` threads
(6 on two cores) and is shared with everything else in the process. The urllib3 `PoolManager` under
the client keeps as many connections as there are threads, so a thread never waits for a connection and
no connection is opened only to be thrown away.

Failures are bounded in time: a connection attempt gives up after `connect_timeout_s` (2 s), a read
after `read_timeout_s` (15 s without a byte), and urllib3 retries a refused or reset connection and a
5xx answer at most `retries` times (3) with short backoff (0.1 s, 0.2 s, 0.4 s; `Retry-After` honoured
up to 1 s), so a call fails with `Unavailable` within about a second when MinIO is down instead of
hanging; retrying for longer is the caller's decision (the worker's `RetryingBlobStore`, the queue's
redelivery). Only idempotent requests are retried (GET, HEAD, PUT, DELETE), which every request of this
adapter is, except the final POST of a multipart upload.

Links are signed by a second client configured for the public endpoint with an explicit region, so
signing never makes a network call (the client would otherwise ask the server for the bucket's region).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
from collections.abc import Callable
from typing import TypeVar

import certifi
import urllib3
from minio import Minio

from runner.adapters.minio.errors import translate
from runner.adapters.minio.settings import S3Settings
from runner.domain.errors import InvalidArgument, Unavailable

T = TypeVar("T")

DEFAULT_THREADS = 16
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 15.0
RETRIES = 3


def pool_manager(settings: S3Settings, size: int, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S, retries: int = RETRIES) -> urllib3.PoolManager:
    """Blocking (reads the CA file)."""
    if settings.ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(settings.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgument(f"S3 setting ca_file: {settings.ca_file} is not a readable file of PEM "
                                  f"certificates: {exc}") from exc
    retry = urllib3.Retry(
        total=retries, connect=retries, read=1, status=retries, other=0, backoff_factor=0.1, backoff_max=1.0,
        status_forcelist=(500, 502, 503, 504), raise_on_status=False, respect_retry_after_header=True)
    return urllib3.PoolManager(
        num_pools=4, maxsize=size, block=False, retries=retry,
        timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
        cert_reqs="CERT_REQUIRED", ca_certs=str(settings.ca_file) if settings.ca_file else certifi.where())


class S3Calls:
    """The clients of one store, and `run`, which makes a blocking call in the store's threads."""

    def __init__(self, settings: S3Settings, threads: int = DEFAULT_THREADS, *,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S,
                 retries: int = RETRIES) -> None:
        """Blocking (reads the CA file); `open` methods call it in a thread."""
        if threads < 1:
            raise InvalidArgument(f"the MinIO store needs at least one thread, not {threads}")
        self.settings = settings
        self.threads = threads
        self.http = pool_manager(settings, threads, connect_timeout_s=connect_timeout_s,
                                 read_timeout_s=read_timeout_s, retries=retries)
        self.client = Minio(settings.endpoint, access_key=settings.access_key, secret_key=settings.secret_key,
                            secure=settings.secure, region=settings.region, http_client=self.http)
        public, public_tls = settings.public_host_and_tls()
        # Never makes a request (explicit region); shares the pool only to avoid creating another.
        self.signer = Minio(public, access_key=settings.access_key, secret_key=settings.secret_key,
                            secure=public_tls, region=settings.region, http_client=self.http)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="minio")
        self._closed = False

    @property
    def bucket(self) -> str:
        return self.settings.bucket

    async def run(self, action: str, fn: Callable[[], T], *, missing: str | None = None) -> T:
        """`fn()` in the store's threads; its exceptions translated (see `errors`). `action` says what
        was being done, for the message; `missing` is the `NotFound` message for an absent object."""
        return await self.wait(self.submit(fn), action, missing=missing)

    async def wait(self, future: concurrent.futures.Future[T], action: str, *, missing: str | None = None) -> T:
        """The result of a call submitted with `submit`, its exception translated. A cancelled caller
        does not cancel the call (a thread cannot be interrupted): it finishes in the background."""
        try:
            return await asyncio.wrap_future(future)
        except Exception as exc:
            error = translate(exc, self.settings, action, missing)
            if error is exc:
                raise
            raise error from exc

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        if self._closed:
            raise Unavailable(f"the MinIO store of {self.settings.describe()} is closed")
        return self._pool.submit(fn)

    async def close(self) -> None:
        """Wait for calls in flight (each bounded by the timeouts), then drop the connections."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
        self.http.clear()
