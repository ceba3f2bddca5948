"""The MCP SDK's own client with its OAuth provider, as Claude Code or any SDK-based agent would use it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from tests.support.browser import BrowserAuthorizer


class MemoryTokenStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def client_metadata(redirect_uri: str, name: str = "Test agent") -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name=name,
        redirect_uris=[AnyUrl(redirect_uri)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )


@asynccontextmanager
async def connect(
    mcp_url: str,
    authorizer: BrowserAuthorizer,
    storage: MemoryTokenStorage,
    *,
    redirect_uri: str,
    client_metadata_url: str | None = None,
    mode: str = "legacy",
) -> AsyncIterator[Client]:
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=client_metadata(redirect_uri),
        storage=storage,
        redirect_handler=authorizer.redirect_handler,
        callback_handler=authorizer.callback_handler,
        client_metadata_url=client_metadata_url,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        Client(streamable_http_client(mcp_url, http_client=http), mode=mode) as client,
    ):
        yield client


async def call_ok(mcp: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call ``tool`` and return its structured result; fails the test if the tool answered with an error."""
    result = await mcp.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)
