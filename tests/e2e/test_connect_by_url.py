"""A real MCP client connects by URL: discovery, DCR, PKCE, sign-in and consent in Chromium, then tools."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from playwright.async_api import Page

from tests.support.browser import BrowserAuthorizer
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer
from tests.support.mcp_client import MemoryTokenStorage, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


async def test_sdk_client_registers_signs_in_consents_and_calls_tools(
    live_server: LiveServer, page: Page, callback_uri: str
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    authorizer = BrowserAuthorizer(
        page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD, screenshot=str(ARTIFACTS / "consent.png")
    )
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


async def test_read_only_consent_hides_write_tools(live_server: LiveServer, page: Page, callback_uri: str) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD, allow_write=False)
    with anyio.fail_after(60):
        async with connect(live_server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "updateTenant" not in names
            assert {"getTenantInfo", "listInstructions", "getInstructions"} <= names
            refused = await client.call_tool("updateTenant", {"name": "Renamed"})
            assert refused.is_error
            assert "Reconnect" in refused.content[0].text  # type: ignore[union-attr]
            info = await client.call_tool("getTenantInfo", {})
            assert info.structured_content is not None and info.structured_content["readOnly"] is True
            assert info.structured_content["tenantName"] == "Default"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_each_protocol_revision_the_sdk_speaks_can_call_tools(
    live_server: LiveServer, page: Page, callback_uri: str, mode: str
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(60):
        async with connect(
            live_server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri, mode=mode
        ) as client:
            result = await client.call_tool("listInstructions", {})
            assert not result.is_error
            assert result.structured_content is not None
            assert "using-this-server" in {g["id"] for g in result.structured_content["guides"]}


async def test_denying_consent_sends_access_denied_to_the_client(
    live_server: LiveServer, page: Page, callback_uri: str
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD, approve=False)
    with anyio.fail_after(60), pytest.raises(BaseException) as failure:
        async with connect(live_server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri):
            pass
    assert "access_denied" in repr(failure.value)
