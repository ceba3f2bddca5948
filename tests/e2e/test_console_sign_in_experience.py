"""The console's sign-in experience page in headless Chromium against a real server: a person changes the branding
and the sign-in methods, the framed preview shows the change (the browser really allows this origin to frame it),
a refused change shows the core's sentence, and axe-core finds no WCAG A/AA violation on the page, at desktop and
phone widths, as an owner and as a read-only member."""

from __future__ import annotations

import anyio
import pytest
from playwright.async_api import Page

from tests.support.axe import axe_violations, describe
from tests.support.browser import launch_browser
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

WIDER_THAN_PHONE = "document.documentElement.scrollWidth"
READER_EMAIL = "reader@example.com"
READER_PASSWORD = "a read-only member's passphrase"


async def _sign_in(page: Page, server: LiveServer, email: str, password: str) -> None:
    await page.goto(f"{server.url}/sign-in?next=/console/t/default/sign-in-experience")
    await page.fill("input[name=identifier]", email)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/t/default/sign-in-experience")


async def _accessible(page: Page, what: str, width: int) -> None:
    if width == 390:
        assert await page.evaluate(WIDER_THAN_PHONE) <= 390, what
    violations = await axe_violations(page)
    assert not violations, f"{what}:\n{describe(violations)}"


async def test_a_person_changes_branding_and_methods_and_the_framed_preview_follows(
    live_server: LiveServer, page: Page
) -> None:
    with anyio.fail_after(90):
        await _sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD)
        await page.click("nav.tenant-nav >> text=Sign-in experience")
        preview = page.frame_locator("iframe.preview-frame")
        await preview.locator("h1").wait_for()  # framed: the browser applied the preview's frame-ancestors 'self'
        assert "Default" in await preview.locator("header.hosted-brand").inner_text()

        await page.fill("#b-displayName", "Acme Shop")
        await page.fill("#b-primaryColor", "#ffff00")
        await page.click("button:has-text('Save branding')")
        await page.wait_for_url("**/sign-in-experience?saved=branding")
        assert "version 1" in await page.inner_text("[role=status]")
        assert "is shown as" in await page.inner_text("#adjusted")
        await preview.locator("h1").wait_for()
        assert "Acme Shop" in await preview.locator("header.hosted-brand").inner_text()

        await page.uncheck("#m-username-password")
        await page.click("button:has-text('Save sign-in methods')")
        await page.wait_for_url("**/sign-in-experience?saved=sign-in")
        await preview.locator("h1").wait_for()
        assert await preview.locator("input[name=identifier]").get_attribute("type") == "email"

        await page.uncheck("#m-email-password")
        await page.click("button:has-text('Save sign-in methods')")
        assert "Keep at least one sign-in method" in await page.inner_text("#sign-in-error")


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
async def test_the_sign_in_experience_page_has_no_wcag_a_or_aa_violation(live_server: LiveServer, width: int) -> None:
    made = live_server.cli(
        "admin", "create", "--email", READER_EMAIL, "--password", READER_PASSWORD, "--tenant", "default",
        "--role", "read-only",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    async with launch_browser() as browser:
        context = await browser.new_context(viewport={"width": width, "height": 900})
        page = await context.new_page()
        with anyio.fail_after(120):
            await _sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD)
            await page.locator("iframe.preview-frame").wait_for()
            await _accessible(page, "sign-in experience", width)
            await page.fill("#b-primaryColor", "#ffff00")
            await page.fill("#b-logoUrl", "http://not-https.example/logo.png")
            await page.click("button:has-text('Save branding')")
            await page.locator("#branding-error").wait_for()
            await _accessible(page, "sign-in experience with a refused change", width)
            await page.fill("#b-logoUrl", "")
            await page.click("button:has-text('Save branding')")
            await page.wait_for_url("**/sign-in-experience?saved=branding")
            await _accessible(page, "sign-in experience with a low-contrast colour saved", width)
            await page.context.clear_cookies()
            await _sign_in(page, live_server, READER_EMAIL, READER_PASSWORD)
            await _accessible(page, "sign-in experience, read-only", width)
        await context.close()
