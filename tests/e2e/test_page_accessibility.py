"""axe-core over the pages no other accessibility test reaches, in headless Chromium against a real server, at
desktop and phone widths, light and dark: the home page and the first-administrator page of a fresh server, the
administrators' sign-in page, the guides, the consent page an MCP client's connection shows, and on a tenant's
issuer (after an agent set faint brand colours) a third-party application's consent page, the sign-out confirmation
and the signed-out page."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.support.axe import axe_violations, describe
from tests.support.browser import launch_browser
from tests.support.inprocess import pkce_pair
from tests.support.live_flow import call_tool, http_client
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, run_live_server
from tests.support.mcp_http import text_of
from tests.support.tokens import obtain_access_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

CALLBACK = "http://127.0.0.1:9/callback"  # never reached: each page is checked before any redirect
USER_EMAIL = "dana@example.com"
USER_PASSWORD = "a user's long passphrase"
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def fresh_server(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    with run_live_server(tmp_path / "server", database_url) as server:
        yield server


def _call(server: LiveServer, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = call_tool(server, token, tool, arguments)
    assert not result.get("isError"), text_of(result)
    return dict(result["structuredContent"])


def _tenant_with_a_partner_app(server: LiveServer) -> str:
    """Faint brand colours, a user, and a third-party application (its users see a consent page): its id."""
    created = server.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
    assert created.returncode == 0, created.stderr
    with http_client(server) as client:
        token = obtain_access_token(client, client_name="E2E agent").access_token
    _call(server, token, "updateBranding", {"displayName": "Acme", "primaryColor": "#ffff00",
                                             "darkPrimaryColor": "#000080"})  # fmt: skip
    _call(server, token, "createUser", {"email": USER_EMAIL, "password": USER_PASSWORD})
    app = _call(server, token, "createApplication", {"name": "Partner app", "type": "spa", "redirectUris": [CALLBACK],
                                                     "thirdParty": True})  # fmt: skip
    return str(app["applicationId"])


def _mcp_client(server: LiveServer) -> str:
    response = httpx.post(f"{server.url}/oauth/register", json={
        "client_name": "Axe agent", "redirect_uris": [CALLBACK], "grant_types": ["authorization_code"],
        "response_types": ["code"], "token_endpoint_auth_method": "none",
    })  # fmt: skip
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


def _authorize_url(base: str, client_id: str, scope: str) -> str:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "scope": scope, "state": "st",
        "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    return f"{base}/authorize?{urlencode(params)}"


async def _check(page: Page, found: dict[str, str], name: str) -> None:
    await page.locator("h1").first.wait_for()
    if page.viewport_size and page.viewport_size["width"] == 390:
        wide = await page.evaluate("document.documentElement.scrollWidth")
        if wide > 390:
            found[name] = f"{wide} px wide"
    if violations := await axe_violations(page):
        found[name] = describe(violations)


async def _sign_in_form(page: Page, identifier: str, password: str) -> None:
    await page.fill("input[name=identifier]", identifier)
    await page.fill("input[name=password]", password)
    await page.click("form:has(input[name=password]) button[type=submit]")


async def _round(browser: Browser, server: LiveServer, viewport: Any, scheme: Any, app_id: str, mcp_client: str,
                 found: dict[str, str]) -> None:  # fmt: skip
    context = await browser.new_context(viewport=viewport, color_scheme=scheme)
    page = await context.new_page()
    where = f"{scheme}, {viewport['width']} px"
    try:
        for name, path in (("sign-in", "/sign-in"), ("guides", "/docs"), ("guide", "/docs/using-this-server")):
            await page.goto(f"{server.url}{path}")
            await _check(page, found, f"{name} ({where})")
        # An MCP client's connection: the sign-in step, then the consent page.
        await page.goto(_authorize_url(f"{server.url}/oauth", mcp_client, "idp:read idp:write"))
        await _check(page, found, f"connection sign-in ({where})")
        await _sign_in_form(page, ADMIN_EMAIL, ADMIN_PASSWORD)
        await page.locator("button[name=action][value=approve]").wait_for()
        await _check(page, found, f"connection consent ({where})")
        await page.goto(server.url)
        await _check(page, found, f"home, signed in ({where})")
        # A tenant user and a third-party application: the hosted consent page.
        await page.goto(_authorize_url(f"{server.url}/t/default/oidc", app_id, "openid email"))
        await _sign_in_form(page, USER_EMAIL, USER_PASSWORD)
        await page.locator("button[name=action][value=approve]").wait_for()
        await _check(page, found, f"hosted consent ({where})")
        # Signing out without an ID token hint asks first; then the signed-out page.
        await page.goto(f"{server.url}/t/default/oidc/end-session")
        await _check(page, found, f"sign-out confirmation ({where})")
        await page.click("button[type=submit]:not(.link)")
        await page.wait_for_load_state()
        await _check(page, found, f"signed out ({where})")
    finally:
        await context.close()


@pytest.mark.parametrize("width", ["desktop", "phone"])
async def test_the_remaining_pages_have_no_wcag_a_or_aa_violation(fresh_server: LiveServer, width: str) -> None:
    viewport = VIEWPORTS[width]
    found: dict[str, str] = {}
    async with launch_browser() as browser:
        with anyio.fail_after(60):  # before any administrator exists
            context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
            page = await context.new_page()
            for name, path in (("home, first visit", "/"), ("first administrator", "/setup")):
                await page.goto(f"{fresh_server.url}{path}")
                await _check(page, found, f"{name} ({width})")
            await context.close()
        app_id = await anyio.to_thread.run_sync(_tenant_with_a_partner_app, fresh_server)
        mcp_client = await anyio.to_thread.run_sync(_mcp_client, fresh_server)
        for scheme in ("light", "dark"):
            with anyio.fail_after(120):
                await _round(browser, fresh_server, viewport, scheme, app_id, mcp_client, found)
    assert not found, "\n".join(f"{name}: {problem}" for name, problem in found.items())
