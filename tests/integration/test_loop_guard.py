"""The loop guard in the running app: a request that would block the event loop on the database fails visibly, and
the paths that used to (the verifier's key reload, password sign-in, createUser) run their database work in a
worker thread. Every other test runs under the guard as well (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import DEFAULT_TENANT_ID, Actor
from idp_mcp.settings import Settings
from idp_mcp.store import loop_guard
from tests.support.clock import Clock
from tests.support.inprocess import PUBLIC_URL, sign_in
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.mcp_http import McpSession
from tests.support.tokens import obtain_access_token


def test_a_request_that_reads_the_database_on_the_event_loop_fails_and_is_recorded(
    settings: Settings, core: IdentityCore
) -> None:
    app = create_app(settings, core)

    async def blocking(request: Request) -> Response:
        return JSONResponse({"admins": core.users.administrators_exist()})  # on the loop: the mistake to catch

    app.add_route("/blocking-for-the-test", blocking)
    before = len(loop_guard.VIOLATIONS)
    try:
        with TestClient(app, base_url=PUBLIC_URL, raise_server_exceptions=False) as client:
            assert client.get("/blocking-for-the-test").status_code == 500
            assert client.get("/healthz").status_code == 200  # the rest of the app is unaffected
        assert [message.split(" (")[1].split(")")[0] for message in loop_guard.VIOLATIONS[before:]] == [
            "connection checkout"
        ]
    finally:
        del loop_guard.VIOLATIONS[before:]  # caused on purpose


@pytest.fixture
def reload_every_time(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The app with IDP_MCP_KEY_CACHE_SECONDS=0: every bearer check finds the signing keys due for a reload."""
    settings = Settings(public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url, key_cache_seconds=0)
    core = IdentityCore.from_settings(settings, Clock())
    core.bootstrap()
    anyio.run(core.users.create_administrator, ADMIN_EMAIL, ADMIN_PASSWORD)
    with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as client:
        yield client
    core.close()


def test_the_mcp_bearer_check_reloads_the_signing_keys_in_a_worker_thread(reload_every_time: TestClient) -> None:
    issued = obtain_access_token(reload_every_time)
    session = McpSession(reload_every_time, issued.access_token)
    session.initialize()
    for _ in range(3):  # a token the verifier has cached, with keys due each time
        assert any(tool["name"] == "getTenantInfo" for tool in session.list_tools())


def test_password_sign_in_and_user_creation_run_off_the_event_loop(client: TestClient, core: IdentityCore) -> None:
    assert sign_in(client).status_code == 303
    assert sign_in(client, password="wrong password, surely").status_code == 401

    async def create() -> str:  # from async code, as the createUser tool calls it
        user = await core.tenant_users.create(
            DEFAULT_TENANT_ID, password="a long enough passphrase 9", actor=Actor(DEFAULT_TENANT_ID, None),
            email="someone@example.com",
        )  # fmt: skip
        return user.id

    assert anyio.run(create)
