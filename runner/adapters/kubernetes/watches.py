"""Watches of the agent namespace's Jobs and Pods, each on its own thread, handed to asyncio.

One watch per kind serves every task of the worker (not one per task): a list, then a watch from the
list's resourceVersion with bookmarks, resumed from the last version seen when the server ends it
(it does every few minutes). When the version is too old (410 Gone: etcd compacted it, or the watch
cache moved on), the watch lists again and replaces what it knew, so an object deleted during the gap
is reported deleted rather than kept forever. Every event reaches the loop through
`call_soon_threadsafe`; `Tracker` keeps the latest Job and Pod of each Job name and wakes whoever waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from runner.adapters.kubernetes.api import KubeApi, Obj

log = logging.getLogger(__name__)

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def job_of_pod(pod: Obj) -> str | None:
    labels = pod.get("metadata", {}).get("labels") or {}
    for key in JOB_NAME_LABELS:
        if key in labels:
            return str(labels[key])
    return None


def _lines(response: Any) -> Iterator[bytes]:
    pending = b""
    for chunk in response.stream(65536, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


class ObjectWatch:
    """Lists and watches one kind of object, forever, until `stop`."""

    def __init__(self, kind: str, list_fn: Callable[..., Any], namespace: str, selector: str,
                 on_list: Callable[[list[Obj]], None], on_event: Callable[[str, Obj], None],
                 loop: asyncio.AbstractEventLoop, watch_timeout_s: int = 240) -> None:
        self.kind = kind
        self._watch_timeout_s = watch_timeout_s
        self._list = list_fn
        self._namespace, self._selector = namespace, selector
        self._on_list, self._on_event = on_list, on_event
        self._loop = loop
        self._stopped = threading.Event()
        self._response: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)
        self.relists = 0  # lists after the first, each after a 410 (or an error)
        self.listed = threading.Event()  # the first list has been delivered

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()  # unblocks the thread's read
        self._thread.join(timeout=5)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while stopping
            self._loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        version: str | None = None
        failures = 0
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._list_all()
                version = self._watch(version)
                failures = 0
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch expired; listing again", extra={"kind": self.kind})
                    version = None
                    continue
                failures += 1
                self._pause(failures, exc)
            except Exception as exc:
                if self._stopped.is_set():
                    return
                failures += 1
                self._pause(failures, exc)

    def _pause(self, failures: int, exc: Exception) -> None:
        log.warning("watch failed; retrying", extra={"kind": self.kind, "error": str(exc)[:300],
                                                     "failures": failures})
        self._stopped.wait(min(10.0, 0.5 * 2 ** min(failures, 5)))

    def _list_all(self) -> str:
        response = self._list(self._namespace, label_selector=self._selector, _preload_content=False,
                              _request_timeout=(5, 60))
        body = json.loads(response.data)
        if self.listed.is_set():
            self.relists += 1
        self._post(self._on_list, list(body.get("items") or []))
        self.listed.set()
        return str(body["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str | None:
        """Follow from `version`; the version to resume from, or None to list again (410)."""
        response = self._list(self._namespace, label_selector=self._selector, watch=True,
                              resource_version=version, allow_watch_bookmarks=True,
                              timeout_seconds=self._watch_timeout_s, _preload_content=False,
                              _request_timeout=(5, self._watch_timeout_s + 30))
        with self._lock:
            self._response = response
        started = time.monotonic()
        try:
            for line in _lines(response):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        log.info("watch expired (410); listing again", extra={"kind": self.kind})
                        return None
                    raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    self._post(self._on_event, str(kind), obj)
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        if time.monotonic() - started < 1 and not self._stopped.is_set():
            self._stopped.wait(0.5)  # a server ending watches at once must not make us spin
        return version


class Tracker:
    """The latest Job and Pod of every Job name in the namespace, on the event loop's thread."""

    def __init__(self) -> None:
        self.jobs: dict[str, Obj] = {}
        self.pods: dict[str, Obj] = {}
        self.deleted_jobs: set[str] = set()
        self._changed: dict[str, asyncio.Event] = {}

    def changed(self, name: str) -> asyncio.Event:
        return self._changed.setdefault(name, asyncio.Event())

    def forget(self, name: str) -> None:
        self._changed.pop(name, None)
        self.deleted_jobs.discard(name)

    def _wake(self, name: str) -> None:
        event = self._changed.get(name)
        if event is not None:
            event.set()

    def on_job_list(self, items: list[Obj]) -> None:
        present = {str(item["metadata"]["name"]): item for item in items}
        for name in set(self.jobs) - set(present):
            self.deleted_jobs.add(name)
            self._wake(name)
        self.jobs = present
        for name in present:
            self._wake(name)

    def on_job_event(self, kind: str, obj: Obj) -> None:
        name = str(obj["metadata"]["name"])
        if kind == "DELETED":
            self.jobs.pop(name, None)
            self.deleted_jobs.add(name)
        else:
            self.jobs[name] = obj
        self._wake(name)

    def on_pod_list(self, items: list[Obj]) -> None:
        present: dict[str, Obj] = {}
        for item in items:
            name = job_of_pod(item)
            if name is not None:
                present[name] = item
        gone = set(self.pods) - set(present)
        self.pods = present
        for name in gone | set(present):
            self._wake(name)

    def on_pod_event(self, kind: str, obj: Obj) -> None:
        name = job_of_pod(obj)
        if name is None:
            return
        if kind == "DELETED":
            if self.pods.get(name, {}).get("metadata", {}).get("uid") == obj["metadata"].get("uid"):
                self.pods.pop(name, None)
        else:
            self.pods[name] = obj
        self._wake(name)


def start_watches(api: KubeApi, namespace: str, selector: str, tracker: Tracker,
                  loop: asyncio.AbstractEventLoop, watch_timeout_s: int = 240) -> tuple[ObjectWatch, ObjectWatch]:
    jobs = ObjectWatch("jobs", api.batch.list_namespaced_job, namespace, selector, tracker.on_job_list,
                       tracker.on_job_event, loop, watch_timeout_s)
    pods = ObjectWatch("pods", api.core.list_namespaced_pod, namespace, selector, tracker.on_pod_list,
                       tracker.on_pod_event, loop, watch_timeout_s)
    jobs.start()
    pods.start()
    return jobs, pods
