"""The console in headless Chromium against a real server: sign in, read the audit log filtered by tool, find the
connected agent, revoke it, and its next /mcp call is refused."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from playwright.async_api import Page

from tests.support.live_flow import call_tool, http_client, mcp_status, wait_for
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer
from tests.support.mcp_http import text_of
from tests.support.tokens import IssuedToken, obtain_access_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

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
