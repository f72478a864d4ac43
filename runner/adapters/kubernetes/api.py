"""`KubeApi`: the few Kubernetes calls the executor makes, typed, off the event loop, with our errors.

The official client is synchronous; every call runs on this adapter's own thread pool (so a slow API
server cannot starve `asyncio.to_thread` users) and returns the object as the API server sent it (a
JSON dict: `_preload_content=False`, no model classes), which is what `manifests` builds too.

Errors become the runner's own (with `__cause__`): 404 `NotFound`, 409 `AlreadyExists`, 410 `Gone`,
401/403 `FailedPrecondition` naming the missing permission (a configuration error: retrying will not
help), 422 `InvalidArgument` (a refused object, e.g. by Pod Security admission: the message says why),
429/5xx and connection failures `Unavailable` (try again).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from runner.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable

Obj = dict[str, Any]
T = TypeVar("T")
_TIMEOUT = (5.0, 30.0)  # connect, read: seconds


class Gone(Unavailable):
    """A watch's resourceVersion is too old (410): list again and watch from the list's version."""

    def __init__(self, message: str) -> None:
        super().__init__(message, delay_s=0.0)


def load_configuration(kubeconfig: str) -> client.Configuration:
    """The configuration of `kubeconfig`, or the in-cluster one (the pod's ServiceAccount) when empty."""
    cfg = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        else:
            config.load_incluster_config(client_configuration=cfg)
    except (config.ConfigException, OSError) as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster configuration"
        raise InvalidArgument(f"cannot load {where} for the Kubernetes executor: {exc}") from exc
    return cfg


def translate(exc: Exception, action: str) -> Exception:
    if isinstance(exc, ApiException):
        status = exc.status or 0
        message = _message(exc)
        if status == 404:
            return NotFound(f"{action}: not found ({message})")
        if status == 409:
            return AlreadyExists(f"{action}: already exists ({message})")
        if status == 410:
            return Gone(f"{action}: {message}")
        if status in (401, 403):
            return FailedPrecondition(f"{action}: the Kubernetes API refused it ({status}: {message}); check the "
                                      "worker's ServiceAccount and Role (docs/kubernetes.md)")
        if status in (400, 422):
            return InvalidArgument(f"{action}: the Kubernetes API refused the object: {message}")
        return Unavailable(f"{action}: the Kubernetes API answered {status}: {message}", delay_s=2.0)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return Unavailable(f"{action}: the Kubernetes API cannot be reached: {exc}", delay_s=2.0)
    return exc


def _message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or b"{}")
    except (ValueError, TypeError):
        return str(exc.reason or "")[:300]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:600]
    return str(exc.reason or "")[:300]


class KubeApi:
    def __init__(self, configuration: client.Configuration, threads: int = 8) -> None:
        self._api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self._api_client)
        self.batch = client.BatchV1Api(self._api_client)
        self.networking = client.NetworkingV1Api(self._api_client)
        self.coordination = client.CoordinationV1Api(self._api_client)
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="kube-api")

    async def call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        """`fn(*args, **kwargs)` on the pool; its JSON answer as a dict."""
        kwargs.setdefault("_request_timeout", _TIMEOUT)

        def run() -> Obj:
            try:
                response = fn(*args, _preload_content=False, **kwargs)
                data = response.data
            except Exception as exc:  # translated below, on the loop's side
                raise translate(exc, action) from exc
            return json.loads(data) if data else {}

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    async def run(self, action: str, fn: Callable[[], T]) -> T:
        """A blocking helper of the adapter's own (e.g. a watch) on the pool, with errors translated."""

        def run() -> T:
            try:
                return fn()
            except Exception as exc:
                raise translate(exc, action) from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(run))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api_client.close()
