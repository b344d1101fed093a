"""Headless Chromium for the console tests: Debian's `chromium` driven by Playwright (its own
browser download is not used), a fresh profile per test module, the console signed in through the
link `make run` prints (`/console/#token=...&brand=...`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("TASKHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    message = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="taskhub-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 900},
            )
            context.set_default_timeout(15_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class ConsolePage:
    """One browser tab on the console, with the page's script errors collected (a test fails on
    any: an uncaught exception in the console is a bug even when the page looks fine)."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.base = page, base
        self.script_errors: list[str] = []
        page.on("pageerror", lambda error: self.script_errors.append(str(error)))

    def sign_in(self, token: str, brand: int = 9) -> None:
        self.page.goto(f"{self.base}/console/#token={token}&brand={brand}")
        self.page.get_by_test_id("who").wait_for()

    def open(self, route: str) -> None:
        self.page.goto(f"{self.base}/console/#{route}")

    def testid(self, name: str) -> Any:
        return self.page.get_by_test_id(name)
