"""A real MCP client connects by URL: discovery, DCR, PKCE, sign-in and consent in Chromium, then tools."""

from __future__ import annotations

import json

import anyio
import pytest
from playwright.async_api import Page

from tests.support.browser import BrowserAuthorizer
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer
from tests.support.mcp_client import MemoryTokenStorage, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_sdk_client_registers_signs_in_consents_and_calls_tools(
    live_server: LiveServer, page: Page, callback_uri: str
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    storage = MemoryTokenStorage()
    with anyio.fail_after(60):
        async with connect(live_server.mcp_url, authorizer, storage, redirect_uri=callback_uri) as client:
            tools = await client.list_tools()
            names = {tool.name for tool in tools.tools}
            assert {"getTenantInfo", "listInstructions", "getInstructions", "updateTenant"} <= names

            result = await client.call_tool("getInstructions", {"topic": "using-this-server"})
            assert not result.is_error
            assert result.structured_content is not None
            assert "# How an agent should use this server" in result.structured_content["markdown"]

            info = await client.call_tool("getTenantInfo", {})
            data = json.loads(info.content[0].text)  # type: ignore[union-attr]
            assert data["tenantId"] == "default"
            assert data["signedInAs"] == ADMIN_EMAIL
            assert data["readOnly"] is False
    assert storage.client_info is not None and storage.client_info.client_id
    assert storage.tokens is not None and storage.tokens.refresh_token
    assert "Test agent" in authorizer.consent_html
