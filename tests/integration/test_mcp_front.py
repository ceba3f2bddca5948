"""/mcp while the MCP SDK is still loading: the 401 to a request without a token is the SDK's own, byte for byte;
a request with a token waits for the SDK; and the app starts without importing the SDK at all."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import idp_mcp.app
from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.mcp_server.front import McpFront
from idp_mcp.settings import Settings
from tests.support.inprocess import PUBLIC_URL

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Holds the SDK's load until the test sets it."""
    gate = threading.Event()

    class GatedFront(McpFront):
        def __init__(self, settings: Settings, load: Callable[[], object]) -> None:
            def gated() -> object:
                assert gate.wait(30), "the test never opened the gate"
                return load()

            super().__init__(settings, gated)  # type: ignore[arg-type]

    monkeypatch.setattr(idp_mcp.app, "McpFront", GatedFront)
    return gate


@pytest.fixture
def gated_client(settings: Settings, core: IdentityCore, gate: threading.Event) -> Iterator[TestClient]:
    with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as client:
        yield client
        gate.set()


def _answer(client: TestClient, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    response = client.post("/mcp", json=PING, headers=headers)
    return response.status_code, sorted(response.headers.items()), response.content


def test_the_401_before_the_sdk_is_loaded_is_the_sdks_own(gated_client: TestClient, gate: threading.Event) -> None:
    before = _answer(gated_client, HEADERS)
    gate.set()
    # A request with a token waits for the SDK, which then refuses it (the token is not one of ours).
    assert gated_client.post("/mcp", json=PING, headers={**HEADERS, "Authorization": "Bearer nope"}).status_code == 401

    after = _answer(gated_client, HEADERS)

    assert before[0] == 401
    assert before == after


@pytest.mark.parametrize("authorization", ["Basic YTpi", "Bearer", "bearer", "Token abc"])
def test_an_authorization_header_without_a_bearer_token_gets_the_same_401_before_and_after(
    gated_client: TestClient, gate: threading.Event, authorization: str
) -> None:
    headers = {**HEADERS, "Authorization": authorization}
    before = _answer(gated_client, headers)
    gate.set()
    gated_client.post("/mcp", json=PING, headers={**HEADERS, "Authorization": "Bearer nope"})

    assert before == _answer(gated_client, headers)


def test_a_request_with_a_token_waits_for_the_sdk(gated_client: TestClient, gate: threading.Event) -> None:
    threading.Timer(0.3, gate.set).start()

    response = gated_client.post("/mcp", json=PING, headers={**HEADERS, "Authorization": "Bearer nope"})

    assert gate.is_set()
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_the_app_starts_without_importing_the_mcp_sdk(database_url: str, tmp_path: Path) -> None:
    program = textwrap.dedent(
        """
        import sys
        from idp_mcp.app import create_app
        create_app().state.core.close()
        print(sorted(name for name in sys.modules if name.split(".")[0] in ("mcp", "mcp_types")))
        """
    )
    env = {**os.environ, "IDP_MCP_DATABASE_URL": database_url, "IDP_MCP_DATA_DIR": str(tmp_path)}

    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
