"""The task page in a real browser (headless Chromium), opened from a share link without any token."""

from __future__ import annotations

import asyncio
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .browser import chromium
from .conftest import TOKEN_A, Site, share_link

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(90)]


def _texts(driver: WebDriver, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def _check_completed_page(url: str, task_id: str) -> None:
    with chromium() as driver:
        driver.get(url)
        assert driver.find_element(By.ID, "state-badge").text == "COMPLETED"
        assert task_id in driver.title
        timeline = _texts(driver, "#timeline li")
        assert any("run_shell_command" in t for t in timeline)
        assert any("exit 1" in t for t in timeline)  # the failing test run before the fix
        assert driver.find_elements(By.CSS_SELECTOR, "#timeline li.ev-message")
        # The side-by-side diff: calc.py changed on both sides, NOTES.md new, its HTML shown as text.
        assert "calc.py" in _texts(driver, "ul.files")[0] and "NOTES.md" in _texts(driver, "ul.files")[0]
        removed = _texts(driver, "table.sbs td.del")
        added = _texts(driver, "table.sbs td.add")
        assert any("a // b" in t for t in removed) and any("a / b" in t for t in added)
        assert any("<b>divide</b> fixed." in t for t in added)
        assert not driver.find_elements(By.CSS_SELECTOR, "table.sbs b")  # no markup from the diff
        assert not driver.find_elements(By.CSS_SELECTOR, "form.share")  # read-only: no share button
        links = {e.text: e.get_attribute("href") for e in driver.find_elements(By.CSS_SELECTOR, "table.artifacts a")}
        assert "view" in links and "download" in links
        view = [e.get_attribute("href") for e in driver.find_elements(By.CSS_SELECTOR, "table.artifacts a")
                if e.text == "view" and "summary.md" in (e.get_attribute("href") or "")]
        driver.get(view[0])
        assert "Fixed `divide`" in driver.find_element(By.TAG_NAME, "body").text


def _watch_live(url: str, until: float) -> tuple[int, int, str]:
    """(entries at load, entries at the end, final badge) of a page opened while its task runs."""
    with chromium() as driver:
        driver.get(url)
        first = len(driver.find_elements(By.CSS_SELECTOR, "#timeline li"))
        while time.monotonic() < until:
            if driver.find_element(By.ID, "state-badge").text == "COMPLETED":
                break
            time.sleep(0.1)
        return (first, len(driver.find_elements(By.CSS_SELECTOR, "#timeline li")),
                driver.find_element(By.ID, "state-badge").text)


async def test_completed_task_from_a_share_link(site: Site) -> None:
    url = await share_link(site, TOKEN_A, site.task_a.id)
    await asyncio.to_thread(_check_completed_page, url, site.task_a.id)


async def test_page_follows_a_running_task(site: Site) -> None:
    task = await site.submit(TOKEN_A, model="page-slow")
    url = await share_link(site, TOKEN_A, task.id)
    first, last, badge = await asyncio.to_thread(_watch_live, url, time.monotonic() + 30)
    assert badge == "COMPLETED"
    assert last > first
    assert (await site.wait(TOKEN_A, task.id)).state.value == "COMPLETED"
