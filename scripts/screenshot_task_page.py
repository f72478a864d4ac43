#!/usr/bin/env python3
"""Take docs/images/task-page.png: a task page in headless Chromium, opened from a share link.

Run by hand after changing how the page looks (CI never rewrites tracked files):

    .venv/bin/python scripts/screenshot_task_page.py [OUT.png]

It starts the same runner as tests/web_tests (a `codex-sys runner serve` process with the HTTP side, the
scripted model, real sandboxes), runs a task on examples/calc, and photographs its shared page. Needs
Debian's chromium and chromium-driver (scripts/install_system_deps.sh) and selenium (the dev extras).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from tests.web_tests.browser import chromium  # noqa: E402
from tests.web_tests.conftest import TOKEN_A, running_site, share_link  # noqa: E402


def _shoot(url: str, out: Path) -> None:
    with chromium(width=1280, height=900) as driver:
        driver.get(url)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(int(height) + 40, 2400))
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))


async def main(out: Path) -> None:
    async with running_site() as site:
        url = await share_link(site, TOKEN_A, site.task_a.id)
        await asyncio.to_thread(_shoot, url, out)
    sys.stdout.write(f"wrote {out}\n")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "images" / "task-page.png"))
