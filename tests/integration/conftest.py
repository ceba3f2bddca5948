from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.settings import Settings
from tests.support.clock import Clock
from tests.support.inprocess import PUBLIC_URL
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.mcp_http import McpSession
from tests.support.tokens import IssuedToken, obtain_access_token


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Settings:
    """The server's settings; a test changes some with
    ``@pytest.mark.parametrize("settings", [{"name": value}], indirect=True)``."""
    changes = getattr(request, "param", {})
    return Settings(public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url, **changes)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(settings: Settings, clock: Clock) -> Iterator[IdentityCore]:
    """The identity core on a fresh database, with an administrator, on a clock the test controls."""
    core = IdentityCore.from_settings(settings, clock, clock.monotonic)
    core.bootstrap()
    anyio.run(core.users.create_administrator, ADMIN_EMAIL, ADMIN_PASSWORD)
    yield core
    core.close()


@pytest.fixture
def client(settings: Settings, core: IdentityCore) -> Iterator[TestClient]:
    """The whole app in process, lifespan included (the MCP session manager runs)."""
    with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as test_client:
        yield test_client


@pytest.fixture
def issued(client: TestClient) -> IssuedToken:
    """A real token from the code flow, for an MCP client named "Claude Test", with write access."""
    return obtain_access_token(client, client_name="Claude Test")


@pytest.fixture
def session(client: TestClient, issued: IssuedToken) -> McpSession:
    """An initialised MCP session speaking with ``issued``."""
    mcp = McpSession(client, issued.access_token)
    mcp.initialize()
    return mcp


@pytest.fixture
def read_only_session(client: TestClient) -> McpSession:
    """An initialised MCP session whose token was approved read-only."""
    mcp = McpSession(client, obtain_access_token(client, allow_write=False).access_token)
    mcp.initialize()
    return mcp
