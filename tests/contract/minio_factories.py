"""Factories of the minio adapters for the contract suites (see `conftest`)."""

from __future__ import annotations

from typing import Any

BLOB_STORES: list[Any] = []
TASK_STORES: list[Any] = []
EVENT_LOGS: list[Any] = []
TASK_QUEUES: list[Any] = []
