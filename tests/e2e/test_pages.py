"""The pages a person sees, in headless Chromium: first administrator, sign-in, sign-out, phone layout."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from playwright.async_api import Page

from tests.support.live_server import LiveServer, run_live_server

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def fresh_server(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    with run_live_server(tmp_path / "server", database_url) as server:
        yield server


async def test_first_visit_offers_to_create_the_first_administrator_then_signs_in_and_out(
    fresh_server: LiveServer, page: Page
) -> None:
    with anyio.fail_after(60):
        await page.goto(f"{fresh_server.url}/sign-in")
        await page.click("text=Create the first administrator")
        await page.fill("input[name=email]", "Grace@Example.com")
        await page.fill("input[name=password]", "short")
        await page.fill("input[name=password_confirm]", "short")
        await page.click("button[type=submit]")
        assert "at least 8 characters" in await page.inner_text("[role=alert]")

        await page.fill("input[name=password]", "a long enough passphrase")
        await page.fill("input[name=password_confirm]", "a long enough passphrase")
        await page.click("button[type=submit]")
        assert "Signed in as" in await page.inner_text("main")
        assert "grace@example.com" in await page.inner_text("main")

        # The welcome page is gone once an administrator exists.
        await page.goto(f"{fresh_server.url}/setup")
        assert page.url.startswith(f"{fresh_server.url}/sign-in")

        await page.goto(f"{fresh_server.url}/")
        await page.click("text=Sign out")
        assert "Sign in" in await page.inner_text("main")

        await page.goto(f"{fresh_server.url}/sign-in")
        await page.fill("input[name=identifier]", "grace@example.com")
        await page.fill("input[name=password]", "wrong password!")
        await page.click("button[type=submit]")
        assert "incorrect" in await page.inner_text("[role=alert]")

        await page.fill("input[name=password]", "a long enough passphrase")
        await page.click("button[type=submit]")
        assert "Signed in as" in await page.inner_text("main")

    cookies = {cookie["name"]: cookie for cookie in await page.context.cookies()}
    session = cookies["idp_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert (
        fresh_server.cli(
            "admin", "create", "--email", "grace@example.com", "--password", "another passphrase"
        ).returncode
        == 1
    )


async def test_sign_in_page_is_usable_on_a_phone(fresh_server: LiveServer, page: Page) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{fresh_server.url}/sign-in")
    box = await page.locator("input[name=identifier]").bounding_box()
    assert box is not None and box["width"] > 250 and box["x"] + box["width"] <= 390
    assert await page.locator("button[type=submit]").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "sign-in-phone.png"), full_page=True)
