"""Headless Chromium (Debian's package) driven by Playwright: signs in and answers the consent page."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from mcp.shared.auth import AuthorizationCodeResult
from playwright.async_api import Browser, Page, Route, async_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("IDP_MCP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("Chromium is not installed: apt-get install chromium (scripts/test does it for you)")
    return path


@asynccontextmanager
async def launch_browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class BrowserAuthorizer:
    """The person at the browser: signs in when asked, then approves (or denies) the consent page.

    Plug ``redirect_handler`` and ``callback_handler`` into the MCP SDK's OAuthClientProvider. The redirect URI
    is intercepted in the browser, as a native app's loopback listener would receive it.
    """

    page: Page
    callback_prefix: str
    email: str
    password: str
    approve: bool = True
    allow_write: bool = True
    tenant: str | None = None
    seen_urls: list[str] = field(default_factory=list)
    consent_html: str = ""
    screenshot: str | None = None  # where to keep a picture of the consent page
    _authorization_url: str | None = None

    async def redirect_handler(self, url: str) -> None:
        self._authorization_url = url

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self._authorization_url, "redirect_handler was not called"
        location = await self.authorize(self._authorization_url)
        query = parse_qs(urlsplit(location).query)
        if "error" in query:
            raise RuntimeError(f"authorization failed: {query['error'][0]}")
        return AuthorizationCodeResult(
            code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
        )

    async def authorize(self, authorization_url: str) -> str:
        """Drive the pages from the authorization URL to the client's redirect URI; return that URL."""
        arrived: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def capture(route: Route) -> None:
            if not arrived.done():
                arrived.set_result(route.request.url)
            await route.fulfill(status=200, body="You can close this window.")

        await self.page.route(f"{self.callback_prefix}**", capture)
        try:
            await self.page.goto(authorization_url)
            self.seen_urls.append(self.page.url)
            if await self.page.locator("input[name=identifier]").count():
                await self.page.fill("input[name=identifier]", self.email)
                await self.page.fill("input[name=password]", self.password)
                await self.page.click("button[type=submit]")
                await self.page.wait_for_load_state()
            if arrived.done():
                return arrived.result()
            await self.page.wait_for_selector("button[name=action][value=approve]")
            self.consent_html = await self.page.content()
            if self.screenshot:
                await self.page.screenshot(path=self.screenshot, full_page=True)
            if self.tenant:
                await self.page.check(f"input[name=tenant][value={self.tenant}]")
            if not self.allow_write and await self.page.locator("input[name=scope][value='idp:write']").count():
                await self.page.uncheck("input[name=scope][value='idp:write']")
            await self.page.click(f"button[name=action][value={'approve' if self.approve else 'deny'}]")
            return await asyncio.wait_for(arrived, timeout=20)
        finally:
            await self.page.unroute(f"{self.callback_prefix}**")
