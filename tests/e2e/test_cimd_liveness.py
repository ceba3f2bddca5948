"""Fifty client ID metadata document URLs on a host that takes the connection and never answers, all in flight at
once, must not hold up anyone else: meanwhile the sign-in page, a tool call and a token request answer at once.

A liveness check, not a benchmark: the bound (1 s each) is generous for a request that waits on nothing, and far
below the fetch deadline (10 s here) that a request stuck behind the fetches would wait.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.support.inprocess import REDIRECT_URI, pkce_pair
from tests.support.live_flow import call_tool, http_client, refreshed, wait_for
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, run_live_server
from tests.support.tls import HangingServer, hanging_https_server
from tests.support.tokens import obtain_access_token

pytestmark = [pytest.mark.e2e]

HANGING_FETCHES = 50
FETCH_TIMEOUT = 10
LIVE_WITHIN = 1.0


@pytest.fixture
def hanging(tmp_path: Path) -> Iterator[HangingServer]:
    with hanging_https_server(tmp_path) as server:
        yield server


@pytest.fixture
def server(tmp_path: Path, database_url: str, hanging: HangingServer) -> Iterator[LiveServer]:
    env = {
        "IDP_MCP_CIMD_ALLOW_PRIVATE_ADDRESSES": "true",  # the slow host is on loopback in tests
        "IDP_MCP_CIMD_CA_BUNDLE": str(hanging.ca_bundle),
        "IDP_MCP_CIMD_TIMEOUT": str(FETCH_TIMEOUT),
        # Caps high enough that all fifty really are in flight: what is tested is that they hold no thread.
        "IDP_MCP_CIMD_MAX_FETCHES": "64",
        "IDP_MCP_CIMD_MAX_FETCHES_PER_HOST": "64",
    }
    with run_live_server(tmp_path / "server", database_url, extra_env=env) as live:
        assert live.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD).returncode == 0
        yield live


def authorize_with_metadata_url(server: LiveServer, client_id: str) -> int:
    _, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge, "code_challenge_method": "S256", "resource": server.mcp_url,
        }
    )  # fmt: skip
    try:
        return httpx.get(f"{server.url}/oauth/authorize?{query}", timeout=FETCH_TIMEOUT * 3).status_code
    except httpx.HTTPError:
        return 0


def timed(work: object) -> float:
    started = time.monotonic()
    work()  # type: ignore[operator]
    return time.monotonic() - started


def test_fifty_hanging_metadata_documents_hold_up_no_page_tool_or_token_request(
    server: LiveServer, hanging: HangingServer
) -> None:
    with http_client(server) as client:
        issued = obtain_access_token(client)  # type: ignore[arg-type]
    refresh_token = issued.refresh_token
    assert refresh_token

    with ThreadPoolExecutor(max_workers=HANGING_FETCHES) as pool:
        pending = [
            pool.submit(authorize_with_metadata_url, server, hanging.url(f"/client-{n}.json"))
            for n in range(HANGING_FETCHES)
        ]
        wait_for(lambda: len(hanging.accepted) >= HANGING_FETCHES or None, timeout=FETCH_TIMEOUT - 2, what="50 fetches")
        assert not any(future.done() for future in pending), "a fetch ended before the checks"

        def sign_in_page() -> None:
            assert httpx.get(f"{server.url}/sign-in", timeout=30).status_code == 200

        def tool_call() -> None:
            assert not call_tool(server, issued.access_token, "getTenantInfo").get("isError")

        def token_request() -> None:
            nonlocal refresh_token
            refresh_token = refreshed(server, issued.client_id, refresh_token or "")["refresh_token"]

        durations = {"sign-in page": timed(sign_in_page), "tool call": timed(tool_call), "token": timed(token_request)}
        assert not any(future.done() for future in pending), "the fetches ended before the checks did"
        statuses = [future.result() for future in pending]

    assert all(seconds < LIVE_WITHIN for seconds in durations.values()), durations
    # Each hanging document ends as a refusal (the error page), never a server error.
    assert set(statuses) <= {400}, statuses
