"""A tenant's error pages in headless Chromium against a real server, after an agent set brand colours too faint to
read as given: an authorization request whose redirect_uri the application did not register stays on our page
(the browser never asks for the refused address), shows the address as text and how to register it; an expired
sign-in request and a missing page are in the tenant's look. axe-core finds no WCAG A/AA violation on them, nor on
the console's connector secret page, at desktop and phone widths, in light and dark mode."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from playwright.async_api import Page, Request

from tests.support.axe import axe_violations, describe
from tests.support.browser import launch_browser
from tests.support.inprocess import pkce_pair
from tests.support.live_flow import call_tool, http_client
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer
from tests.support.mcp_http import text_of
from tests.support.tokens import obtain_access_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

CALLBACK = "http://127.0.0.1:9/callback"
REFUSED = 'https://evil.example/cb?next="><script>alert(1)</script>'
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def _call(server: LiveServer, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = call_tool(server, token, tool, arguments)
    assert not result.get("isError"), text_of(result)
    return dict(result["structuredContent"])


def _tenant_set_up(server: LiveServer) -> tuple[str, str]:
    """An application, faint brand colours and a connector waiting for its secret: (application id, secret URL)."""
    with http_client(server) as client:
        token = obtain_access_token(client, client_name="E2E agent").access_token
    app = _call(server, token, "createApplication", {"name": "Acme web", "type": "spa", "redirectUris": [CALLBACK]})
    _call(server, token, "updateBranding", {"displayName": "Acme", "primaryColor": "#ffff00",
                                             "darkPrimaryColor": "#000080", "darkMode": "auto"})  # fmt: skip
    connector = _call(server, token, "createConnector", {"preset": "github", "name": "GitHub", "clientId": "gh-app"})
    return app["applicationId"], connector["secretUrl"]


def _authorization_url(server: LiveServer, client_id: str, redirect_uri: str) -> str:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "openid",
        "state": "st", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    return f"{server.url}/t/default/oidc/authorize?{urlencode(params)}"


async def _accessible(page: Page, what: str, width: int) -> None:
    if width == 390:
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, f"{what} is {wide} px wide"
    violations = await axe_violations(page)
    assert not violations, f"{what}:\n{describe(violations)}"


async def test_the_redirect_uri_error_never_leaves_and_says_how_to_register(
    live_server: LiveServer, page: Page
) -> None:
    application_id, _ = await anyio.to_thread.run_sync(_tenant_set_up, live_server)
    asked: list[str] = []

    def record(request: Request) -> None:
        asked.append(request.url)

    page.on("request", record)
    with anyio.fail_after(60):
        response = await page.goto(_authorization_url(live_server, application_id, REFUSED))
        assert response is not None and response.status == 400
        assert page.url.startswith(live_server.url)
        assert await page.inner_text("#rejected-uri") == REFUSED  # shown as text, markup and all
        call = await page.inner_text("#register-call")
        assert call.startswith(f'updateApplication {{"applicationId": "{application_id}", "redirectUris": [')
        assert await page.locator("script").count() == 0
        assert "Acme" in await page.inner_text("header.hosted-brand")
        await page.click("text=Acme web in the console")
        await page.wait_for_url(re.compile(r"/sign-in\?next="))  # the console asks who you are first
    assert not [url for url in asked if url.startswith("https://evil.example")]


@pytest.mark.parametrize("width", ["desktop", "phone"])
async def test_tenant_error_pages_and_the_connector_secret_page_have_no_wcag_violations(
    live_server: LiveServer, width: str
) -> None:
    application_id, secret_url = await anyio.to_thread.run_sync(_tenant_set_up, live_server)
    viewport = VIEWPORTS[width]
    pages = {
        "redirect URI error": _authorization_url(live_server, application_id, REFUSED),
        "expired sign-in request": f"{live_server.url}/t/default/interaction/expired-or-never-was",
        "missing page": f"{live_server.url}/t/default/no-such-page",
    }
    async with launch_browser() as browser:
        for scheme in ("light", "dark"):
            context = await browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
            page = await context.new_page()
            with anyio.fail_after(90):
                for name, url in pages.items():
                    await page.goto(url)
                    assert "hosted-brand" in await page.content(), name
                    await _accessible(page, f"{name} ({scheme})", viewport["width"])
                await page.goto(f"{live_server.url}/sign-in?next=/console")
                await page.fill("input[name=identifier]", ADMIN_EMAIL)
                await page.fill("input[name=password]", ADMIN_PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_url("**/console/**")
                await page.goto(secret_url)
                await page.locator("input[name=clientSecret]").wait_for()
                await _accessible(page, f"connector secret ({scheme})", viewport["width"])
                await page.fill("input[name=clientSecret]", "a-github-client-secret")
                await page.click("button:has-text('Save secret')")
                await page.locator("[role=alert], [role=status]").first.wait_for()
                await _accessible(page, f"connector secret after submitting ({scheme})", viewport["width"])
            await context.close()
