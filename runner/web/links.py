"""Page URLs and share links: what the gRPC API and the pages hand out.

`PageLinks` is the small service object behind `GetTaskPageLink` and the page's share button: it checks
the task belongs to the caller's tenant (another tenant's task is NotFound, as everywhere), clamps the
lifetime and signs the link. `base_url` is the runner's public URL (`--public-url`), set once the HTTP
side listens (a port 0 is known only then).
"""

from __future__ import annotations

import time

from runner.tasks.ids import check_task_id
from runner.tasks.service import TaskService
from runner.web.share import ShareSigner, clamp_expiry


class PageLinks:
    def __init__(self, service: TaskService, signer: ShareSigner, base_url: str = "") -> None:
        self._service = service
        self._signer = signer
        self.base_url = base_url.rstrip("/")

    def page_url(self, task_id: str) -> str:
        return f"{self.base_url}/tasks/{check_task_id(task_id)}"

    async def share(self, tenant: str, task_id: str, expires_s: int) -> tuple[str, float]:
        """(url, expires_at) of a link that opens the task's page read-only without a token."""
        lifetime = clamp_expiry(expires_s)
        record = await self._service.get(tenant, task_id)
        expires_at = int(time.time()) + lifetime
        return f"{self.base_url}/s/{self._signer.sign(record.id, tenant, expires_at)}", float(expires_at)
