"""The console in headless Chromium against a real server: sign in, read the audit log filtered by tool, find the
connected agent, revoke it, and its next /mcp call is refused; and axe-core on every console page (and the 404 page)
at desktop and phone widths."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from playwright.async_api import Page

from tests.support.axe import axe_violations, describe
from tests.support.browser import launch_browser
from tests.support.live_flow import call_tool, http_client, mcp_status, wait_for
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer
from tests.support.mcp_http import text_of
from tests.support.tokens import IssuedToken, obtain_access_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

# The elements whose right edge passes the phone's width, to name in a failure.
WIDER_THAN_PHONE = """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391)
  .map(e => `${e.tagName}.${e.className}`).slice(0, 8)"""
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _agent_at_work(server: LiveServer) -> IssuedToken:
    """An agent connected by the administrator, which creates an application and reads the tenant."""
    with http_client(server) as client:
        token = obtain_access_token(client, client_name="E2E agent")
    created = call_tool(server, token.access_token, "createApplication", {"name": "Shop backend", "type": "m2m"})
    assert not created.get("isError"), text_of(created)
    assert not call_tool(server, token.access_token, "getTenantInfo").get("isError")
    return token


async def test_audit_log_filtered_by_tool_then_revoking_the_agent_refuses_its_next_mcp_call(
    live_server: LiveServer, page: Page
) -> None:
    agent = await anyio.to_thread.run_sync(_agent_at_work, live_server)
    assert await anyio.to_thread.run_sync(mcp_status, live_server, agent.access_token) == 200
    ARTIFACTS.mkdir(exist_ok=True)
    with anyio.fail_after(90):
        await page.goto(f"{live_server.url}/sign-in?next=/console")
        await page.fill("input[name=identifier]", ADMIN_EMAIL)
        await page.fill("input[name=password]", ADMIN_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/t/default/applications")

        await page.click("nav.tenant-nav >> text=Audit log")
        await page.fill("input[name=tool]", "createApplication")
        await page.click("button:has-text('Filter')")
        await page.wait_for_url("**/audit?*tool=createApplication*")
        table = await page.inner_text("table.audit")
        assert "tool.createApplication" in table and "E2E agent" in table and ADMIN_EMAIL in table
        assert "tool.getTenantInfo" not in table
        await page.screenshot(path=str(ARTIFACTS / "console-audit.png"), full_page=True)

        await page.click("nav.tenant-nav >> text=Connected agents")
        row = page.locator("tr", has_text="E2E agent")
        assert agent.client_id in await row.inner_text()
        assert "idp:write" in await row.inner_text()
        await page.screenshot(path=str(ARTIFACTS / "console-agents.png"), full_page=True)
        await row.locator("a", has_text="Revoke").click()
        await page.click("button:has-text('Revoke E2E agent')")
        assert "The agent was revoked" in await page.inner_text("[role=status]")
        assert "No agent is connected" in await page.inner_text("main")

    # The token was used before: the verifier may answer from its few-seconds revocation cache until it expires.
    def refused() -> bool:
        return mcp_status(live_server, agent.access_token) == 401

    await anyio.to_thread.run_sync(lambda: wait_for(refused, timeout=15, what="the revoked agent's 401"))


def _tenant_with_content(server: LiveServer) -> tuple[IssuedToken, str, str]:
    """An agent that made an application (with a temporary secret) and a user: every console page has something."""
    agent = _agent_at_work(server)
    created = call_tool(server, agent.access_token, "createApplication", {"name": "Web shop", "type": "traditional",
                        "redirectUris": ["https://shop.example.com/callback"]})  # fmt: skip
    assert not created.get("isError"), text_of(created)
    user = call_tool(server, agent.access_token, "createUser", {"email": "linus@example.com", "username": "linus",
                     "password": "a user's long passphrase", "name": "Linus"})  # fmt: skip
    assert not user.get("isError"), text_of(user)
    return agent, created["structuredContent"]["applicationId"], user["structuredContent"]["userId"]


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
async def test_every_console_page_has_no_wcag_a_or_aa_violation(live_server: LiveServer, width: int) -> None:
    agent, application_id, user_id = await anyio.to_thread.run_sync(_tenant_with_content, live_server)
    tenant = f"{live_server.url}/console/t/default"
    pages = {
        "applications": f"{tenant}/applications",
        "application": f"{tenant}/applications/{application_id}",
        "users": f"{tenant}/users",
        "users-search-empty": f"{tenant}/users?q=nobody",
        "user": f"{tenant}/users/{user_id}",
        "delete-user": f"{tenant}/users/{user_id}/delete",
        "audit": f"{tenant}/audit?tool=createApplication",
        "audit-bad-filter": f"{tenant}/audit?since=yesterday",
        "agents": f"{tenant}/agents",
        "revoke-agent": f"{tenant}/agents/revoke?client={agent.client_id}",
        "not-found": f"{live_server.url}/no-such-page",
    }
    async with launch_browser() as browser:
        # axe is injected as an inline script, which the console's CSP (rightly) refuses: bypass it for the check.
        context = await browser.new_context(bypass_csp=True, viewport={"width": width, "height": 900})
        page = await context.new_page()
        with anyio.fail_after(120):
            await page.goto(f"{live_server.url}/sign-in?next=/console")
            await page.fill("input[name=identifier]", ADMIN_EMAIL)
            await page.fill("input[name=password]", ADMIN_PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/console/t/default/applications")
            found: dict[str, str] = {}

            async def check(name: str) -> None:
                if width == 390:  # nothing wider than the phone's screen but the tables' own scrolling boxes
                    overflow = await page.evaluate("document.documentElement.scrollWidth")
                    wide = await page.evaluate(WIDER_THAN_PHONE)
                    assert overflow <= 390, f"{name} is {overflow} px wide: {wide}"
                if problems := await axe_violations(page):
                    found[name] = describe(problems)

            for name, url in pages.items():
                await page.goto(url)
                await check(name)
            # The secret pages, reached as a person does: the revoke confirmation, then a new production secret.
            await page.goto(pages["application"])
            await page.click("a:has-text('Revoke')")
            await check("revoke-secret")
            await page.goto(pages["application"])
            await page.click("button:has-text('Create production secret')")
            await page.wait_for_url("**/reveal")
            await check("secret-created")
        await context.close()
    assert not found, found
