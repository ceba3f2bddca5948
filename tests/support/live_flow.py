"""The in-process helpers (tests/support/inprocess.py, tokens.py, mcp_http.py) pointed at real servers: they speak
through an httpx client, so a client with the live server's base URL runs the same sign-in, consent, token and MCP
steps over real sockets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx2
import jwt

from tests.support.inprocess import refresh
from tests.support.live_server import LiveServer
from tests.support.mcp_http import McpSession, text_of

T = TypeVar("T")


@contextmanager
def http_client(server: LiveServer | str) -> Iterator[httpx2.Client]:
    """A client for ``server`` (a LiveServer or a base URL) with its own cookie jar, as a browser would have."""
    base_url = server if isinstance(server, str) else server.url
    with httpx2.Client(base_url=base_url, timeout=30) as client:
        yield client


def call_tool(
    server: LiveServer, access_token: str, name: str, arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Initialize an MCP session at ``server`` and call one tool; the tools/call result (a protocol error fails)."""
    with http_client(server) as client:
        session = McpSession(client, access_token)
        session.initialize()
        return session.call_tool(name, arguments or {})


def mcp_status(server: LiveServer, access_token: str) -> int:
    """The HTTP status /mcp answers an initialize with this token: 200 accepted, 401 refused."""
    with http_client(server) as client:
        return McpSession(client, access_token).initialize_response().status_code


def tool_succeeds(server: LiveServer, access_token: str, name: str = "getTenantInfo") -> bool:
    result = call_tool(server, access_token, name)
    assert not result.get("isError"), text_of(result)
    return True


def refreshed(server: LiveServer, client_id: str, refresh_token: str) -> dict[str, Any]:
    """A refresh_token grant at ``server``; the token response (asserted 200)."""
    with http_client(server) as client:
        response = refresh(client, client_id, refresh_token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def jwks_kids(server: LiveServer, path: str = "/oauth/jwks") -> set[str]:
    with http_client(server) as client:
        return {key["kid"] for key in client.get(path).json()["keys"]}


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy, at most ``timeout`` seconds; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
