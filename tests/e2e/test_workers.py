"""`idp-mcp serve --workers 2`: several uvicorn worker processes behind one port, with stateless MCP. Every
request opens a connection of its own, so sign-in, consent, token and MCP requests land on either worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import assert_no_secrets_in_logs
from tests.support.inprocess import register_client
from tests.support.live_flow import call_tool, http_client, refreshed
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, run_live_server
from tests.support.tokens import obtain_access_token

pytestmark = pytest.mark.e2e

PASSWORD = "a user passphrase 42"


def child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


@pytest.fixture
def workers(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    env = {"IDP_MCP_MCP_STATELESS": "true"}
    with run_live_server(tmp_path / "server", database_url, extra_env=env, serve_args=("--workers", "2")) as server:
        created = server.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        yield server
    assert_no_secrets_in_logs(server)


def test_two_workers_serve_sign_in_tokens_and_mcp_tools(workers: LiveServer) -> None:
    assert workers.process is not None
    # The supervisor and its two workers (multiprocessing may add a helper process of its own).
    assert len(child_pids(workers.process.pid)) >= 2

    with http_client(workers) as client:
        issued = obtain_access_token(client)

    for n in range(6):
        created = call_tool(
            workers, issued.access_token, "createUser", {"email": f"user{n}@example.com", "password": PASSWORD}
        )
        assert not created.get("isError"), created
        info = call_tool(workers, issued.access_token, "getTenantInfo")
        assert info["structuredContent"]["signedInAs"] == ADMIN_EMAIL
    listed = call_tool(workers, issued.access_token, "listUsers")
    emails = {user["email"] for user in listed["structuredContent"]["users"]}
    assert {f"user{n}@example.com" for n in range(6)} <= emails

    refresh_token = issued.refresh_token
    for _ in range(4):
        body = refreshed(workers, issued.client_id, refresh_token or "")
        refresh_token = body["refresh_token"]
        assert not call_tool(workers, body["access_token"], "listApplications").get("isError")

    for n in range(4):
        with http_client(workers) as client:
            assert register_client(client, client_name=f"Agent {n}")["client_id"]
