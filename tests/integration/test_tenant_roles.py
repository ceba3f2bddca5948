"""Administrators are members of the tenants they were added to, with a role: the first one owns `default`, later
ones act on nothing until added; a read-only member's agents get only the read tools and the console refuses their
writes, whatever the consent page was sent."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.tenants import ReadOnlyMember
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor, User
from idp_mcp.errors import Forbidden, TenantNotFound, ValidationFailed
from idp_mcp.settings import Settings
from tests.support.clock import Clock
from tests.support.inprocess import PUBLIC_URL, REDIRECT_URI, authorize, csrf_from, pkce_pair, register_client, sign_in
from tests.support.live_server import ADMIN_EMAIL
from tests.support.mcp_http import McpSession, text_of
from tests.support.tokens import obtain_access_token

SECOND_EMAIL = "grace@example.com"
SECOND_PASSWORD = "second long passphrase"
CLI_ACTOR = Actor(tenant_id=ADMIN_TENANT_ID, sub=None, client_name="test")
WRITE_TOOLS = {"createApplication", "updateTenant", "createUser", "deleteUser"}


def second_admin(core: IdentityCore, **membership: str) -> User:
    return anyio.run(lambda: core.users.create_administrator(SECOND_EMAIL, SECOND_PASSWORD, **membership))


def signed_in_as_second(client: TestClient) -> TestClient:
    assert sign_in(client, "/", SECOND_EMAIL, SECOND_PASSWORD).status_code == 303
    return client


def applications(core: IdentityCore) -> list[str]:
    return [application.id for application in core.applications.list(DEFAULT_TENANT_ID)]


# --- who is a member of what ----------------------------------------------------------------------------------


def test_the_first_administrator_owns_default_and_a_later_one_is_a_member_of_nothing(core: IdentityCore) -> None:
    first = core.users.find_administrator(ADMIN_EMAIL)
    assert first is not None
    assert [(tenant.id, role) for tenant, role in core.tenants.memberships(first.id)] == [(DEFAULT_TENANT_ID, "owner")]

    second = second_admin(core)

    assert core.tenants.memberships(second.id) == []
    assert core.users.administrator_may_act(second.id, DEFAULT_TENANT_ID) is False


def test_an_administrator_created_into_a_tenant_has_the_role_given(core: IdentityCore) -> None:
    second = second_admin(core, tenant_id=DEFAULT_TENANT_ID, role="read-only")

    assert [(tenant.id, role) for tenant, role in core.tenants.memberships(second.id)] == [
        (DEFAULT_TENANT_ID, "read-only")
    ]
    [entry] = [e for e in core.audit.recent(ADMIN_TENANT_ID) if e.action == "admin.create" and e.target_id == second.id]
    assert entry.details["tenants"] == {DEFAULT_TENANT_ID: "read-only"}


@pytest.mark.parametrize(
    ("membership", "error", "message"),
    [
        ({"tenant_id": "nope"}, TenantNotFound, "does not exist"),
        ({"tenant_id": ADMIN_TENANT_ID}, TenantNotFound, "does not exist"),
        ({"role": "admin"}, ValidationFailed, "name the tenant"),
        ({"tenant_id": DEFAULT_TENANT_ID, "role": "root"}, ValidationFailed, "owner, admin, read-only"),
    ],
    ids=["unknown-tenant", "admin-tenant", "role-without-tenant", "unknown-role"],
)
def test_creating_an_administrator_with_a_bad_membership_creates_nothing(
    core: IdentityCore, membership: dict[str, str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        second_admin(core, **membership)

    assert core.users.find_administrator(SECOND_EMAIL) is None


def test_members_are_added_and_their_role_changed_but_the_last_owner_stays(core: IdentityCore) -> None:
    first = core.users.find_administrator(ADMIN_EMAIL)
    assert first is not None
    second = second_admin(core)

    assert core.tenants.set_member(DEFAULT_TENANT_ID, second.id, "admin", CLI_ACTOR) is None
    assert core.tenants.require_member(DEFAULT_TENANT_ID, second.id, write=True) == "admin"
    assert core.tenants.set_member(DEFAULT_TENANT_ID, second.id, "read-only", CLI_ACTOR) == "admin"
    with pytest.raises(ReadOnlyMember, match="read-only member"):
        core.tenants.require_member(DEFAULT_TENANT_ID, second.id, write=True)
    with pytest.raises(ValidationFailed, match="last owner"):
        core.tenants.set_member(DEFAULT_TENANT_ID, first.id, "admin", CLI_ACTOR)
    with pytest.raises(TenantNotFound):
        core.tenants.set_member("nope", second.id, "admin", CLI_ACTOR)

    rows = [e for e in core.audit.recent(DEFAULT_TENANT_ID) if e.action == "tenant.member_set"]
    assert [(e.details["role"], e.details["previous_role"]) for e in rows] == [("read-only", "admin"), ("admin", None)]


# --- an administrator without membership ------------------------------------------------------------------------


def test_an_administrator_without_membership_neither_sees_nor_acts_on_default(
    client: TestClient, core: IdentityCore
) -> None:
    second_admin(core)
    signed_in_as_second(client)

    console = client.get(f"/console/t/{DEFAULT_TENANT_ID}/applications")
    assert console.status_code == 403
    assert "not an administrator of this tenant" in console.text
    assert 'href="/console/t/default' not in client.get("/console").text

    registered = register_client(client, client_name="Agent")
    with pytest.raises(AssertionError):  # the consent page offers no tenant, so there is nothing to approve
        authorize(client, registered["client_id"], tenant=DEFAULT_TENANT_ID)
    # A forged consent naming default is refused too.
    refused = _consent(client, registered["client_id"], tenant=DEFAULT_TENANT_ID)
    assert refused.status_code == 200 and "Choose a tenant you administer" in refused.text


def _consent(client: TestClient, client_id: str, *, tenant: str, write: bool = True) -> Any:
    _verifier, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "scope": "idp:read idp:write",
        "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    start = client.get(f"/oauth/authorize?{urlencode(params)}", follow_redirects=False)
    interaction = urlsplit(start.headers["location"]).path
    page = client.get(interaction)
    form = {"csrf_token": csrf_from(page.text), "action": "approve", "tenant": tenant}
    if write:
        form["scope"] = "idp:write"
    return client.post(f"{interaction}/consent", data=form, follow_redirects=False)


def test_the_authorization_flow_itself_refuses_a_tenant_the_user_does_not_administer(
    client: TestClient, core: IdentityCore, clock: Clock
) -> None:
    second = second_admin(core)  # a member of nothing
    registered = register_client(client, client_name="Agent")
    _verifier, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": registered["client_id"], "redirect_uri": REDIRECT_URI,
        "scope": "idp:read", "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    start = client.get(f"/oauth/authorize?{urlencode(params)}", follow_redirects=False)
    interaction_id = urlsplit(start.headers["location"]).path.rsplit("/", 1)[-1]
    interaction = core.sessions.get_interaction(interaction_id)
    assert interaction is not None
    pages = next(route for route in client.app.routes if getattr(route, "path", "") == "/interaction/{id}")
    flow = pages.endpoint.__self__.flow  # type: ignore[attr-defined]

    with pytest.raises(Forbidden):  # whatever page or tool asks (not only the consent page checks)
        flow.approve(
            interaction, user_id=second.id, auth_time=clock(), scopes=["idp:read"], acting_tenant_id=DEFAULT_TENANT_ID
        )

    # Refused as a whole: the request is still pending and no consent was recorded.
    assert core.sessions.get_interaction(interaction_id) is not None
    assert not core.grants.client_approved(ADMIN_TENANT_ID, registered["client_id"])


# --- read-only members --------------------------------------------------------------------------------------------


def test_a_read_only_members_consent_grants_no_write_access_even_when_asked(
    client: TestClient, core: IdentityCore
) -> None:
    second_admin(core, tenant_id=DEFAULT_TENANT_ID, role="read-only")
    signed_in_as_second(client)

    issued = obtain_access_token(client)  # write access ticked on the consent page

    assert issued.claims["scope"].split() == ["idp:read", "offline_access"]
    session = McpSession(client, issued.access_token)
    session.initialize()
    names = {tool["name"] for tool in session.list_tools()}
    assert "listApplications" in names and not names & WRITE_TOOLS


def test_a_member_demoted_to_read_only_can_no_longer_write_through_mcp_with_an_earlier_token(
    client: TestClient, core: IdentityCore
) -> None:
    second = second_admin(core, tenant_id=DEFAULT_TENANT_ID, role="admin")
    signed_in_as_second(client)
    issued = obtain_access_token(client)
    assert "idp:write" in issued.claims["scope"].split()
    core.tenants.set_member(DEFAULT_TENANT_ID, second.id, "read-only", CLI_ACTOR)
    session = McpSession(client, issued.access_token)
    session.initialize()
    before = applications(core)

    names = {tool["name"] for tool in session.list_tools()}
    result = session.call_tool(
        "createApplication", {"name": "Sneaky", "type": "spa", "redirectUris": ["https://a.example/cb"]}
    )

    assert not names & WRITE_TOOLS
    assert result["isError"] is True
    assert "read-only" in text_of(result) and "default" in text_of(result)
    assert applications(core) == before
    assert session.call_tool("listApplications", {}).get("isError") is not True


def test_a_read_only_member_cannot_create_a_production_secret_in_the_console(
    client: TestClient, core: IdentityCore
) -> None:
    owner = core.users.find_administrator(ADMIN_EMAIL)
    assert owner is not None
    application = core.applications.create(
        DEFAULT_TENANT_ID, name="Web", app_type="traditional", actor=Actor(DEFAULT_TENANT_ID, owner.id),
        redirect_uris=["https://app.example.com/cb"],
    )  # fmt: skip
    second_admin(core, tenant_id=DEFAULT_TENANT_ID, role="read-only")
    signed_in_as_second(client)
    url = f"/console/t/{DEFAULT_TENANT_ID}/applications/{application.id}"

    page = client.get(url)
    assert page.status_code == 200 and "Web" in page.text
    assert f'action="{url}/secrets"' not in page.text and "read-only member" in page.text

    refused = client.post(f"{url}/secrets", data={"csrf_token": csrf_from(page.text)})

    assert refused.status_code == 403 and "read-only member" in refused.text
    assert core.secrets.list(DEFAULT_TENANT_ID, application.id) == []


def test_the_administrator_created_on_the_setup_page_owns_default(settings: Settings, clock: Clock) -> None:
    core = IdentityCore.from_settings(settings, clock)
    core.bootstrap()
    try:
        # From this machine, so the setup page needs no setup code (see test_setup_code.py).
        with TestClient(create_app(settings, core), base_url=PUBLIC_URL, client=("127.0.0.1", 50000)) as client:
            page = client.get("/setup")
            done = client.post(
                "/setup",
                data={
                    "csrf_token": csrf_from(page.text), "email": "first@example.com", "password": SECOND_PASSWORD,
                    "password_confirm": SECOND_PASSWORD, "next": "/",
                },
                follow_redirects=False,
            )  # fmt: skip
            assert done.status_code == 303, done.text
        first = core.users.find_administrator("first@example.com")
        assert first is not None
        assert [(t.id, role) for t, role in core.tenants.memberships(first.id)] == [(DEFAULT_TENANT_ID, "owner")]
    finally:
        core.close()
