"""The console's connected-agents page: the MCP clients acting on a tenant, who approved them, and revoking one
(its next /mcp call is refused, its refresh token too), with the role, CSRF and tenant checks."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.audit import AuditQuery
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor
from tests.support.console import (
    READER_EMAIL,
    READER_PASSWORD,
    STRANGER_EMAIL,
    STRANGER_PASSWORD,
    XSS,
    Cast,
    cast,
    csrf,
    signed_in,
    text_of,
)
from tests.support.inprocess import authorize, exchange_code, refresh, register_client
from tests.support.live_server import ADMIN_EMAIL
from tests.support.mcp_http import McpSession
from tests.support.tokens import IssuedToken, obtain_access_token

AGENTS = f"/console/t/{DEFAULT_TENANT_ID}/agents"
REVOKE = f"{AGENTS}/revoke"


@pytest.fixture
def people(core: IdentityCore) -> Cast:
    return cast(core)


@pytest.fixture
def agent(client: TestClient, people: Cast) -> IssuedToken:
    """An agent the owner connected to the default tenant (never used yet: no revocation status is cached)."""
    return obtain_access_token(client, client_name="Claude Desktop")


def _revoke(client: TestClient, client_id: str, token: str | None) -> int:
    data = {"client_id": client_id} | ({"csrf_token": token} if token is not None else {})
    return client.post(REVOKE, data=data, follow_redirects=False).status_code


def _still_connected(core: IdentityCore, client_id: str) -> bool:
    return any(agent.client_id == client_id for agent in core.agents.list(DEFAULT_TENANT_ID))


def test_the_page_lists_each_agent_with_who_approved_it_its_scopes_and_its_last_token(
    client: TestClient, agent: IssuedToken
) -> None:
    page = signed_in(client).get(AGENTS)
    assert page.status_code == 200
    text = text_of(page.text)
    for expected in ("Claude Desktop", agent.client_id, ADMIN_EMAIL, "idp:read idp:write offline_access"):
        assert expected in text, expected
    assert "<td>Unknown</td>" not in page.text  # it got a refresh token when it connected: that is its last token
    assert f'href="{REVOKE}?client={agent.client_id}"' in page.text
    # The tenant's pages link to each other.
    for section in ("applications", "users", "audit", "agents"):
        assert f'href="/console/t/{DEFAULT_TENANT_ID}/{section}"' in page.text
    assert 'aria-current="page">Connected agents' in page.text


def test_revoking_an_agent_refuses_its_next_mcp_call_and_its_refresh_token(
    client: TestClient, core: IdentityCore, agent: IssuedToken
) -> None:
    signed_in(client)
    confirm = client.get(f"{REVOKE}?client={agent.client_id}")
    assert confirm.status_code == 200 and "Revoke Claude Desktop?" in confirm.text
    assert _revoke(client, agent.client_id, csrf(client, AGENTS)) == 303

    assert McpSession(client, agent.access_token).initialize_response().status_code == 401
    assert agent.refresh_token
    assert refresh(client, agent.client_id, agent.refresh_token).json()["error"] == "invalid_grant"
    assert not _still_connected(core, agent.client_id)
    assert "No agent is connected" in client.get(AGENTS).text
    (row,) = core.audit.search(DEFAULT_TENANT_ID, AuditQuery(action="agent.revoke"))
    assert row.target_id == agent.client_id and row.actor_sub is not None
    assert row.details == {"name": "Claude Desktop", "grants": 1}


def test_revoking_one_agent_leaves_the_others_working(client: TestClient, agent: IssuedToken) -> None:
    other = obtain_access_token(client, client_name="Cursor")
    signed_in(client)
    assert _revoke(client, agent.client_id, csrf(client, AGENTS)) == 303
    assert McpSession(client, other.access_token).initialize_response().status_code == 200
    assert "Cursor" in client.get(AGENTS).text


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_a_revoke_without_the_right_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, core: IdentityCore, agent: IssuedToken, token: str | None
) -> None:
    signed_in(client)
    assert _revoke(client, agent.client_id, token) == 403
    assert _still_connected(core, agent.client_id)


def test_a_read_only_member_sees_the_agents_but_cannot_revoke_one(
    client: TestClient, core: IdentityCore, agent: IssuedToken
) -> None:
    signed_in(client, READER_EMAIL, READER_PASSWORD)
    page = client.get(AGENTS)
    assert page.status_code == 200 and "Claude Desktop" in page.text
    assert REVOKE not in page.text
    assert _revoke(client, agent.client_id, csrf(client, AGENTS)) == 403
    assert _still_connected(core, agent.client_id)


def test_an_administrator_of_another_tenant_gets_403_and_changes_nothing(
    client: TestClient, core: IdentityCore, agent: IssuedToken
) -> None:
    signed_in(client, STRANGER_EMAIL, STRANGER_PASSWORD)
    page = client.get(AGENTS)
    assert page.status_code == 403 and "Claude Desktop" not in page.text
    assert client.get(f"{REVOKE}?client={agent.client_id}").status_code == 403
    assert _revoke(client, agent.client_id, csrf(client, "/console/t/acme/agents")) == 403
    assert _still_connected(core, agent.client_id)
    # Its own tenant has no agent: the default tenant's agent does not show there.
    assert "No agent is connected" in client.get("/console/t/acme/agents").text


def test_revoking_an_unknown_or_revoked_agent_is_a_clear_404(client: TestClient, agent: IssuedToken) -> None:
    signed_in(client)
    token = csrf(client, AGENTS)
    assert _revoke(client, agent.client_id, token) == 303
    response = client.post(REVOKE, data={"client_id": agent.client_id, "csrf_token": token})
    assert response.status_code == 404 and "revoked already" in response.text
    assert client.get(f"{REVOKE}?client=nobody").status_code == 404


def test_an_agent_name_with_markup_is_shown_as_text(client: TestClient, people: Cast) -> None:
    hostile = obtain_access_token(client, client_name=XSS)
    signed_in(client)
    for page in (AGENTS, f"{REVOKE}?client={hostile.client_id}"):
        html = client.get(page).text
        assert XSS not in html
        assert "&lt;script&gt;" in html


def test_revoking_an_agent_on_one_tenant_leaves_its_grant_on_another(
    client: TestClient, core: IdentityCore, people: Cast
) -> None:
    """One client, approved by the owner for two tenants: the default tenant's page revokes only that tenant's grant."""
    core.tenants.set_member("acme", people.owner_id, "admin", Actor(tenant_id=ADMIN_TENANT_ID, sub=people.stranger_id))
    registered = register_client(client, client_name="Two-tenant agent")
    tokens = {}
    for tenant in (DEFAULT_TENANT_ID, "acme"):
        result = authorize(client, registered["client_id"], tenant=tenant)
        response = exchange_code(client, registered["client_id"], result)
        assert response.status_code == 200, response.text
        tokens[tenant] = response.json()["access_token"]
    assert [agent.name for agent in core.agents.list("acme")] == ["Two-tenant agent"]

    signed_in(client)
    assert _revoke(client, registered["client_id"], csrf(client, AGENTS)) == 303
    assert not _still_connected(core, registered["client_id"])
    assert [agent.name for agent in core.agents.list("acme")] == ["Two-tenant agent"]
    assert McpSession(client, tokens[DEFAULT_TENANT_ID]).initialize_response().status_code == 401
    assert McpSession(client, tokens["acme"]).initialize_response().status_code == 200
