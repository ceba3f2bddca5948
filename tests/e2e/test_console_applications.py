"""An application's page in headless Chromium against a real server: a person adds a redirect URI in the settings
form and the application may use it at once; creates a production secret, copies it with the copy button, reloads
the reveal page (one secret, shown once), rotates it and revokes the old one, which the token endpoint refuses at
once while the new one works; axe-core finds no WCAG A/AA violation on the new secret's page with its copy button
and on the settings form (open, and with a refused change), at desktop and phone widths."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from playwright.async_api import Page

from tests.support.axe import axe_violations, describe
from tests.support.browser import launch_browser
from tests.support.live_flow import call_tool, http_client
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer
from tests.support.mcp_http import text_of
from tests.support.tokens import obtain_access_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

CALLBACK = "https://shop.example.com/callback"
NEW = "https://shop.example.com/auth/callback"


def _applications(server: LiveServer) -> tuple[str, str]:
    """A web app (signs users in) and a backend (client credentials): their ids."""
    with http_client(server) as client:
        token = obtain_access_token(client, client_name="E2E agent").access_token

    def create(arguments: dict[str, Any]) -> str:
        result = call_tool(server, token, "createApplication", arguments)
        assert not result.get("isError"), text_of(result)
        return str(result["structuredContent"]["applicationId"])

    web = create({"name": "Web shop", "type": "traditional", "redirectUris": [CALLBACK]})
    return web, create({"name": "Shop backend", "type": "m2m"})


def _token_status(server: LiveServer, client_id: str, secret: str) -> int:
    response = httpx.post(
        f"{server.url}/t/default/oidc/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return response.status_code


async def _sign_in(page: Page, server: LiveServer, next_url: str) -> None:
    await page.goto(f"{server.url}/sign-in?next={next_url}")
    await page.fill("input[name=identifier]", ADMIN_EMAIL)
    await page.fill("input[name=password]", ADMIN_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"**{next_url}")


async def _secret_from_reveal(page: Page, application_url: str) -> tuple[str, str]:
    await page.goto(application_url)
    await page.click("button:has-text('Create production secret')")
    await page.wait_for_url("**/reveal")
    value = await page.input_value("#secret-value")
    secret_id = (await page.inner_text("dl.settings")).split("Secret ID")[1].split()[0]
    return secret_id, value


async def test_settings_then_reveal_reload_rotate_and_revoke(live_server: LiveServer, page: Page) -> None:
    web, backend = await anyio.to_thread.run_sync(_applications, live_server)
    base = f"{live_server.url}/console/t/default/applications"
    with anyio.fail_after(120):
        await _sign_in(page, live_server, f"/console/t/default/applications/{web}")
        await page.click("summary:has-text('Edit settings')")
        await page.fill("#a-redirects", f"{CALLBACK}\n{NEW}")
        await page.click("button:has-text('Save settings')")
        await page.wait_for_url("**?saved=1")
        assert NEW in await page.inner_text("dl.settings")

        first_id, first = await _secret_from_reveal(page, f"{base}/{backend}")
        # The copy button (the page's policy runs /static/copy.js, nothing inline) puts the value on the clipboard.
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
        await page.click("button:has-text('Copy secret')")
        await page.wait_for_function("document.getElementById('copy-status').textContent !== ''")
        assert await page.inner_text("#copy-status") == "Copied."
        assert await page.evaluate("navigator.clipboard.readText()") == first
        await page.reload()
        assert first not in await page.content()
        assert "is not shown again" in await page.inner_text("main")
        await page.goto(f"{base}/{backend}")
        # The reload made no second production secret (the temporary one is createApplication's).
        assert await page.locator("tbody tr", has_text="Production").count() == 1
        assert await anyio.to_thread.run_sync(_token_status, live_server, backend, first) == 200

        second_id, second = await _secret_from_reveal(page, f"{base}/{backend}")  # rotate: a second one
        assert second_id != first_id
        await page.goto(f"{base}/{backend}")
        await page.click(f"a:has-text('Revoke secret {first_id}')")
        await page.click("button:has-text('Revoke')")
        await page.wait_for_url(f"**/applications/{backend}")
        assert await anyio.to_thread.run_sync(_token_status, live_server, backend, first) == 401
        assert await anyio.to_thread.run_sync(_token_status, live_server, backend, second) == 200


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
async def test_the_settings_form_has_no_wcag_a_or_aa_violation(live_server: LiveServer, width: int) -> None:
    web, _ = await anyio.to_thread.run_sync(_applications, live_server)
    async with launch_browser() as browser:
        context = await browser.new_context(viewport={"width": width, "height": 900})
        page = await context.new_page()
        with anyio.fail_after(90):
            await _sign_in(page, live_server, f"/console/t/default/applications/{web}")
            await page.click("button:has-text('Create production secret')")
            await page.locator("button:has-text('Copy secret')").wait_for()  # the script ran: the button shows
            if width == 390:
                assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            violations = await axe_violations(page)
            assert not violations, f"new secret with its copy button:\n{describe(violations)}"
            await page.goto(f"{live_server.url}/console/t/default/applications/{web}")
            await page.click("summary:has-text('Edit settings')")
            for what in ("open", "with a refused change"):
                if width == 390:
                    assert await page.evaluate("document.documentElement.scrollWidth") <= 390, what
                violations = await axe_violations(page)
                assert not violations, f"settings form {what}:\n{describe(violations)}"
                await page.fill("#a-redirects", "")
                await page.click("button:has-text('Save settings')")
                await page.locator("#settings-error").wait_for()
        await context.close()
