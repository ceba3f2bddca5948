"""Two replicas behind one public URL: two real server processes on one PostgreSQL database, answering as the
same issuer, with stateless MCP (no sticky routing). Whatever one does, the other honours: codes, access
tokens, a key rotation done from the command line, and a revocation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import assert_no_secrets_in_logs
from tests.support.databases import DB_KIND, fresh_database_url
from tests.support.inprocess import authorize, exchange_code, refresh, register_client
from tests.support.live_flow import (
    call_tool,
    http_client,
    jwks_kids,
    kid_of,
    mcp_status,
    refreshed,
    tool_succeeds,
    wait_for,
)
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, free_port, run_live_server
from tests.support.tokens import obtain_access_token

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        DB_KIND != "postgresql",
        reason="replicas share a PostgreSQL database; two processes on one SQLite file is not how idp-mcp scales out "
        "(run with IDP_MCP_TEST_DB=postgresql)",
    ),
]

KEY_CACHE_SECONDS = 1
REVOCATION_CACHE_SECONDS = 5  # McpTokenVerifier's default


@dataclass
class Replicas:
    a: LiveServer
    b: LiveServer


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """One pair for the module (each test uses grants of its own): starting servers is the slow part."""
    directory = tmp_path_factory.mktemp("replicas")
    with fresh_database_url(directory) as database_url, _replicas(directory, database_url) as pair:
        yield pair


@contextmanager
def _replicas(directory: Path, database_url: str) -> Iterator[Replicas]:
    public_port = free_port()
    env = {
        # Both answer as the first one: one issuer, one MCP resource, as behind a load balancer.
        "IDP_MCP_PUBLIC_URL": f"http://127.0.0.1:{public_port}",
        "IDP_MCP_MCP_STATELESS": "true",
        "IDP_MCP_KEY_CACHE_SECONDS": str(KEY_CACHE_SECONDS),
    }
    with run_live_server(directory / "server", database_url, extra_env=env, port=public_port) as a:
        created = a.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        with run_live_server(directory / "server", database_url, extra_env=env) as b:
            yield Replicas(a, b)
    assert_no_secrets_in_logs(a)
    assert_no_secrets_in_logs(b)


def test_a_code_issued_by_one_replica_is_redeemed_at_the_other(replicas: Replicas) -> None:
    with http_client(replicas.a) as at_a, http_client(replicas.b) as at_b:
        client_id = register_client(at_a)["client_id"]
        result = authorize(at_a, client_id)
        response = exchange_code(at_b, client_id, result)
        assert response.status_code == 200, response.text
        tokens = response.json()
        # The issuer is the one public URL whichever replica answered.
        assert result.params["iss"] == replicas.a.url
        assert tool_succeeds(replicas.a, tokens["access_token"])
        # And the code is spent everywhere: replaying it at the first replica fails (and revokes the grant).
        assert exchange_code(at_a, client_id, result).json()["error"] == "invalid_grant"


def test_an_access_token_from_one_replica_works_at_either_for_every_mcp_request(replicas: Replicas) -> None:
    with http_client(replicas.b) as at_b:
        issued = obtain_access_token(at_b)
    for server in (replicas.a, replicas.b):
        result = call_tool(server, issued.access_token, "getTenantInfo")
        assert not result.get("isError") and result["structuredContent"]["signedInAs"] == ADMIN_EMAIL

    # Stateless MCP: a write through one replica is seen through the other, request by request.
    renamed = call_tool(replicas.a, issued.access_token, "updateTenant", {"name": "Renamed through A"})
    assert not renamed.get("isError"), renamed
    info = call_tool(replicas.b, issued.access_token, "getTenantInfo")
    assert info["structuredContent"]["tenantName"] == "Renamed through A"


def test_a_key_rotation_from_the_command_line_is_used_and_accepted_by_both_replicas(replicas: Replicas) -> None:
    with http_client(replicas.a) as at_a:
        issued = obtain_access_token(at_a)
    old_kid = kid_of(issued.access_token)

    rotated = replicas.a.cli("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_kid = rotated.stdout.split()[1]
    assert new_kid != old_kid

    # Both publish it within their key cache interval...
    for server in (replicas.a, replicas.b):
        wait_for(lambda s=server: new_kid in jwks_kids(s), timeout=KEY_CACHE_SECONDS + 5, what="JWKS with the new key")
        assert old_kid in jwks_kids(server)  # the old key stays published until retired

    # ...and both sign with it: refresh at each replica until its access token carries the new kid.
    refresh_token = issued.refresh_token
    assert refresh_token
    new_tokens: dict[str, str] = {}
    for name, server in (("a", replicas.a), ("b", replicas.b)):

        def signs_with_new_key(server: LiveServer = server) -> str | None:
            nonlocal refresh_token
            body = refreshed(server, issued.client_id, refresh_token or "")
            refresh_token = body["refresh_token"]
            return str(body["access_token"]) if kid_of(body["access_token"]) == new_kid else None

        new_tokens[name] = wait_for(signs_with_new_key, timeout=KEY_CACHE_SECONDS + 5, what=f"{name} signing anew")

    # Tokens signed by the new key are accepted by both; the one signed by the old key too.
    for server in (replicas.a, replicas.b):
        assert tool_succeeds(server, new_tokens["a"])
        assert tool_succeeds(server, new_tokens["b"])
        assert tool_succeeds(server, issued.access_token)


def test_a_refresh_token_revoked_at_one_replica_is_refused_at_the_other(replicas: Replicas) -> None:
    with http_client(replicas.a) as at_a:
        issued = obtain_access_token(at_a)
    assert issued.refresh_token
    # B has verified the access token and cached "not revoked" for its grant.
    assert tool_succeeds(replicas.b, issued.access_token)

    with http_client(replicas.a) as at_a:
        revoked = at_a.post("/oauth/revoke", data={"token": issued.refresh_token, "client_id": issued.client_id})
    assert revoked.status_code == 200, revoked.text

    with http_client(replicas.b) as at_b:
        refused = refresh(at_b, issued.client_id, issued.refresh_token)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text

    # The access tokens of the revoked grant stop at the other replica within its revocation cache window.
    wait_for(
        lambda: mcp_status(replicas.b, issued.access_token) == 401,
        timeout=REVOCATION_CACHE_SECONDS + 3,
        what="the other replica to refuse the access token of a revoked grant",
        interval=0.5,
    )
    assert mcp_status(replicas.a, issued.access_token) == 401
