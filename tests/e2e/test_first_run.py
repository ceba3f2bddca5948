"""The README's first run, as a new user types it: ``scripts/serve --port <port>`` with no IDP_MCP_PUBLIC_URL, the
administrator created from another directory, then an MCP client connects to the URL the start-up block printed.
Before the advertised URLs followed --port, they named port 8000 and every client met a closed port."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from playwright.async_api import Page

from tests.support.browser import BrowserAuthorizer
from tests.support.first_run import REPO, cli, serving, user_environment
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, free_port
from tests.support.mcp_client import MemoryTokenStorage, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_the_readme_serve_command_with_a_port_and_no_public_url_lets_a_client_connect(
    tmp_path: Path, page: Page, callback_uri: str
) -> None:
    venv = Path(sys.prefix)
    assert (venv / "bin" / "idp-mcp").exists(), "the test venv has no idp-mcp: scripts/serve would install into it"
    # HOME is the test's (the default data directory with it); scripts/serve uses the test's venv, not ./.venv.
    env = user_environment(tmp_path / "home", IDP_MCP_VENV=str(venv))
    port = free_port()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with serving([str(REPO / "scripts" / "serve"), "--port", str(port)], env, port, tmp_path / "serve.log") as served:
        mcp_url = served.advertised_mcp_url()
        assert mcp_url == f"http://127.0.0.1:{port}/mcp", served.output()
        database = tmp_path / "home" / ".local" / "share" / "idp-mcp" / "idp-mcp.db"
        assert f"Database:           {database} (SQLite)" in served.output()
        created = cli(env, "admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD, cwd=elsewhere)
        assert created.returncode == 0, created.stderr

        authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
        with anyio.fail_after(90):
            async with connect(mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as client:
                info = await client.call_tool("getTenantInfo", {})
                assert not info.is_error
                assert info.structured_content is not None
                assert info.structured_content["signedInAs"] == ADMIN_EMAIL
    assert ADMIN_PASSWORD not in served.output()
