"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

Screenshots of every page land in bench/out/dashboard/ (not committed). Skipped, with one
line, where no Chromium is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from polycrowd.web.server import make_app

from .conftest import DashWorld

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "bench" / "out" / "dashboard"

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover
    async_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(
    async_playwright is None or not Path(CHROMIUM).exists(),
    reason="no headless Chromium (apt-get install chromium) or no playwright: browser tests off",
)


@pytest.fixture
async def site(dash_world: DashWorld) -> AsyncIterator[str]:
    from aiohttp.test_utils import TestServer

    app = dash_world.app
    server = TestServer(make_app(app.engine, app.settings, app.translator, app.metrics))
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    assert async_playwright is not None
    profile = tempfile.mkdtemp(prefix="pc-chromium-")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


def local(site: str, link: str) -> str:
    parts = urlsplit(link)
    return f"{site}{parts.path}?{parts.query}"


async def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_dashboard_in_chromium(site: str, browser: Any, dash_world: DashWorld) -> None:
    page = await browser.new_page()

    # no session: 401 and how to log in
    response = await page.goto(f"{site}/")
    assert response.status == 401
    assert "Send /dashboard to the bot" in await page.inner_text("body")
    await shot(page, "01-login-required")

    # the one-time link from the bot
    link = await dash_world.login_link(dash_world.alice)
    response = await page.goto(local(site, link))
    assert response.status == 200
    await shot(page, "02-logged-in")
    await page.click("#open")
    await page.wait_for_selector("#projects")
    text = await page.inner_text("#projects")
    assert "Pets <b>of Alice</b>" in text and "Bob's pets" not in text  # escaped, own only
    await shot(page, "03-projects")

    alice_pid = dash_world.projects["Pets <b>of Alice</b>"]
    await page.click(f"a[href='/projects/{alice_pid}']")
    await page.wait_for_selector("figure img")
    sizes = await page.eval_on_selector_all(
        "figure img", "imgs => imgs.map(i => [i.naturalWidth, i.complete])"
    )
    assert len(sizes) >= 4 and all(w == 1080 and ok for w, ok in sizes)
    await shot(page, "04-project")
    await page.set_viewport_size({"width": 412, "height": 900})
    await shot(page, "05-project-phone")
    await page.set_viewport_size({"width": 1280, "height": 900})

    await page.click("a[href='/workers']")
    await page.wait_for_selector("#workers")
    assert "w-" in await page.inner_text("#workers")
    await shot(page, "06-workers")

    # another requester's project
    bob_pid = dash_world.projects["Bob's pets"]
    response = await page.goto(f"{site}/projects/{bob_pid}")
    assert response.status == 403
    assert "not allowed" in await page.inner_text("body")
    await shot(page, "07-forbidden")

    # the moderator, in a fresh session
    await page.goto(f"{site}/logout")
    link = await dash_world.login_link(dash_world.moderator)
    await page.goto(local(site, link))
    await page.click("#open")
    await page.wait_for_selector("#projects")
    await page.click("a[href='/flags']")
    await page.wait_for_selector("#appeals")
    assert "I am sure it was a dog" in await page.inner_text("#appeals")
    await shot(page, "08-flags")
    await page.click("a[href='/ledger']")
    await page.wait_for_selector("#ledger")
    assert "Ledger OK" in await page.inner_text("#audit")
    await shot(page, "09-ledger")
