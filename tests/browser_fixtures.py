"""The workbench in a real browser: the desk served by uvicorn on a free port of this test process,
and Debian's chromium driven by Playwright (its own browser download is not reachable, so it is
launched from ``/usr/bin/chromium``; CI installs it with apt)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn

from desk.api import create_app
from tests.desk_fixtures import PASSWORD, Desk

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - the test extras were not installed
    pytest.fail("the workbench's browser tests need Playwright: .venv/bin/pip install -e '.[test]'",
                pytrace=False)

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1440, "height": 900}
__all__ = ["Browser", "Page", "Tab", "expect", "launch_chromium", "logged_in", "screenshot", "serve_the_desk"]


def chromium() -> str:
    found = os.environ.get("ARREARS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail("Debian's chromium is needed for the workbench's browser tests: "
                    "sudo apt-get install -y chromium (Playwright's own browser download is not used)", pytrace=False)
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="served")
async def serve_the_desk(desk: Desk) -> AsyncIterator[str]:
    """The desk's app (API and workbench) on 127.0.0.1, served on this module's event loop."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(desk.desk), log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if serving.done():
            serving.result()  # it failed to start: say why
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        listener.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="browser")
async def launch_chromium() -> AsyncIterator[Browser]:
    """One headless chromium for the module; each test opens its own context (cookies) in it."""
    path = chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Tab:
    """A logged-in page, with what it saw that it should not have: dialogs and CSP violations."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)


@asynccontextmanager
async def logged_in(browser: Browser, base: str, user: str, *, locale: str = "en-US") -> AsyncIterator[Tab]:
    """A fresh browser context in which ``user`` logged in through the form."""
    context = await browser.new_context(base_url=base, locale=locale, viewport=VIEWPORT)
    page = await context.new_page()
    tab = Tab(page)

    def on_dialog(dialog) -> None:  # type: ignore[no-untyped-def]
        tab.dialogs.append(dialog.message)
        asyncio.ensure_future(dialog.dismiss())

    page.on("dialog", on_dialog)
    page.on("console", lambda message: tab.csp_violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    try:
        await page.goto("/login")
        await page.fill("#username", user)
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_load_state()
        assert "/login" not in page.url, await page.content()
        yield tab
        assert tab.csp_violations == [], tab.csp_violations
    finally:
        await context.close()


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """docs/screenshots/NAME.png, only when ARREARS_SCREENSHOTS=1 (tests leave tracked files alone)."""
    if os.environ.get("ARREARS_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.evaluate("document.fonts.ready.then(() => true)")  # the CJK font, if it is the desk's
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
