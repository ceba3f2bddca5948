"""Suspending or deleting a user ends everything they hold, at once and for good: introspection answers
``{"active": false}`` for their access and refresh tokens, refresh is refused, userinfo is refused, their browser
sessions end, and reactivating them does not bring the old grants back. The same for administrators at the MCP
issuer. Over HTTP through the whole app in process, on the real database."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import anyio
import jwt
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor
from idp_mcp.store.tables import web_sessions
from tests.integration.test_mcp_auth import assert_refused_as_invalid_token
from tests.support.inprocess import refresh
from tests.support.tokens import TENANT_CALLBACK, obtain_access_token, tenant_authorization_code

TENANT = DEFAULT_TENANT_ID
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
PASSWORD = "user passphrase 42"
TOKEN_URL = f"/t/{TENANT}/oidc/token"


@dataclass(frozen=True)
class SignedIn:
    """A user signed in through the hosted page (the browser keeps the session), and a confidential app's tokens."""

    user_id: str
    client_id: str
    secret: str
    access_token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        basic = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {basic}"}


@pytest.fixture
def signed_in(client: TestClient, core: IdentityCore) -> SignedIn:
    user = anyio.run(
        lambda: core.tenant_users.create(TENANT, email="carol@example.com", password=PASSWORD, actor=ACTOR)
    )
    app = core.applications.create(
        TENANT, name="Web", app_type="traditional", actor=ACTOR, redirect_uris=[TENANT_CALLBACK]
    )
    secret = core.secrets.create(TENANT, app.id, "temporary", ACTOR).value
    code, verifier = tenant_authorization_code(client, app.id, identifier="carol@example.com", password=PASSWORD)
    basic = base64.b64encode(f"{app.id}:{secret}".encode()).decode()
    response = client.post(
        TOKEN_URL,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": TENANT_CALLBACK,
              "code_verifier": verifier},
        headers={"Authorization": f"Basic {basic}"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    tokens = response.json()
    return SignedIn(user.id, app.id, secret, tokens["access_token"], tokens["refresh_token"])


def introspect(client: TestClient, who: SignedIn, token: str) -> dict[str, Any]:
    response = client.post(f"/t/{TENANT}/oidc/introspect", data={"token": token}, headers=who.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def refresh_tenant(client: TestClient, who: SignedIn, token: str) -> Any:
    return client.post(TOKEN_URL, data={"grant_type": "refresh_token", "refresh_token": token}, headers=who.auth)


def userinfo(client: TestClient, token: str) -> int:
    return client.get(f"/t/{TENANT}/oidc/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code


def sessions_of(core: IdentityCore, tenant_id: str, user_id: str) -> int:
    with core.db.read() as conn:
        statement = select(func.count()).where(web_sessions.c.tenant_id == tenant_id, web_sessions.c.user_id == user_id)
        return int(conn.execute(statement).scalar_one())


def assert_everything_ended(client: TestClient, core: IdentityCore, who: SignedIn) -> None:
    assert introspect(client, who, who.access_token) == {"active": False}
    assert introspect(client, who, who.refresh_token) == {"active": False}
    assert userinfo(client, who.access_token) == 401
    refused = refresh_tenant(client, who, who.refresh_token)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert sessions_of(core, TENANT, who.user_id) == 0


def test_the_control_everything_works_before_the_suspension(
    client: TestClient, core: IdentityCore, signed_in: SignedIn
) -> None:
    assert introspect(client, signed_in, signed_in.access_token)["active"] is True
    assert introspect(client, signed_in, signed_in.refresh_token)["active"] is True
    assert userinfo(client, signed_in.access_token) == 200
    assert sessions_of(core, TENANT, signed_in.user_id) == 1


def test_suspension_ends_tokens_and_sessions_and_reactivation_does_not_revive_them(
    client: TestClient, core: IdentityCore, signed_in: SignedIn
) -> None:
    core.tenant_users.update(TENANT, signed_in.user_id, UserChanges(suspended=True), ACTOR)
    assert_everything_ended(client, core, signed_in)
    # The browser that was signed in must sign in again: the hosted page asks for the password.
    start = client.get(
        f"/t/{TENANT}/oidc/authorize",
        params={"response_type": "code", "client_id": signed_in.client_id, "redirect_uri": TENANT_CALLBACK,
                "scope": "openid", "state": "s"},
        follow_redirects=True,
    )  # fmt: skip
    assert 'name="password"' in start.text

    core.tenant_users.update(TENANT, signed_in.user_id, UserChanges(suspended=False), ACTOR)
    assert_everything_ended(client, core, signed_in)
    suspension, reactivation = [row for row in core.audit.recent(TENANT) if row.action == "user.update"][::-1]
    assert suspension.details == {"changed": ["suspended"], "revoked_grants": 1}
    assert reactivation.details == {"changed": ["suspended"]}


def test_deletion_ends_tokens_and_sessions(client: TestClient, core: IdentityCore, signed_in: SignedIn) -> None:
    core.tenant_users.delete(TENANT, signed_in.user_id, ACTOR)
    assert_everything_ended(client, core, signed_in)


def test_suspended_users_grant_stays_ended_even_when_its_refresh_token_rotated_concurrently(
    client: TestClient, core: IdentityCore, signed_in: SignedIn
) -> None:
    # A rotation that raced with the suspension stored a successor the suspension's UPDATE did not see: its family
    # is revoked, so it is refused at refresh and introspection after reactivation all the same.
    rotated = refresh_tenant(client, signed_in, signed_in.refresh_token).json()["refresh_token"]
    core.tenant_users.update(TENANT, signed_in.user_id, UserChanges(suspended=True), ACTOR)
    with core.db.transaction() as conn:  # undo the token's own mark, as if stored after the suspension
        from idp_mcp.core.crypto import digest
        from idp_mcp.store.tables import refresh_tokens

        conn.execute(
            refresh_tokens.update().where(refresh_tokens.c.token_digest == digest(rotated)).values(revoked_at=None)
        )
    core.tenant_users.update(TENANT, signed_in.user_id, UserChanges(suspended=False), ACTOR)
    assert introspect(client, signed_in, rotated) == {"active": False}
    assert refresh_tenant(client, signed_in, rotated).status_code == 400


def test_introspection_checks_the_user_even_for_a_grant_not_revoked(
    client: TestClient, core: IdentityCore, signed_in: SignedIn
) -> None:
    # Suspended without the revocation (a row written before it existed, or by hand): introspection still says no.
    from idp_mcp.store.tables import users

    with core.db.transaction() as conn:
        conn.execute(users.update().where(users.c.id == signed_in.user_id).values(suspended=True))
    assert introspect(client, signed_in, signed_in.access_token) == {"active": False}
    assert introspect(client, signed_in, signed_in.refresh_token) == {"active": False}


def test_client_credentials_tokens_stay_active_at_introspection(client: TestClient, core: IdentityCore) -> None:
    # Tokens of an application itself have no user to check.
    app = core.applications.create(TENANT, name="Job", app_type="m2m", actor=ACTOR)
    secret = core.secrets.create(TENANT, app.id, "temporary", ACTOR).value
    basic = {"Authorization": "Basic " + base64.b64encode(f"{app.id}:{secret}".encode()).decode()}
    token = client.post(TOKEN_URL, data={"grant_type": "client_credentials"}, headers=basic).json()["access_token"]
    answer = client.post(f"/t/{TENANT}/oidc/introspect", data={"token": token}, headers=basic).json()
    assert answer["active"] is True and answer["sub"] == app.id


@pytest.mark.parametrize("action", ["suspend", "delete"])
def test_administrator_suspended_or_deleted_loses_mcp_access_and_grants(
    client: TestClient, core: IdentityCore, action: str
) -> None:
    issued = obtain_access_token(client)  # signs the administrator in, in this browser
    assert issued.refresh_token
    admin_id = issued.user_id
    assert sessions_of(core, ADMIN_TENANT_ID, admin_id) == 1
    if action == "suspend":
        core.tenant_users.update(ADMIN_TENANT_ID, admin_id, UserChanges(suspended=True), ACTOR)
    else:
        core.tenant_users.delete(ADMIN_TENANT_ID, admin_id, ACTOR)

    assert_refused_as_invalid_token(client, issued.access_token)
    assert refresh(client, issued.client_id, issued.refresh_token).status_code == 400
    assert sessions_of(core, ADMIN_TENANT_ID, admin_id) == 0
    assert client.get("/console", follow_redirects=False).headers["location"].startswith("/sign-in")
    assert core.grants.is_family_revoked(issued.grant_id)
    if action == "suspend":
        core.tenant_users.update(ADMIN_TENANT_ID, admin_id, UserChanges(suspended=False), ACTOR)
        assert refresh(client, issued.client_id, issued.refresh_token).status_code == 400
        assert core.grants.is_family_revoked(issued.grant_id)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert claims["sub"] == admin_id
