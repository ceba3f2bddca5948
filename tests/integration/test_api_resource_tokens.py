"""Tokens for a tenant's API resources (RFC 8707 + RFC 9068), through the real token, authorization, introspection and
revocation endpoints: aud = the API's identifier, scope = the requested permissions the subject holds through its
roles, re-evaluated at every token (refreshes included), invalid_target for anything else, and no crossing of
tenants."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import jwt
import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.roles import Role
from idp_mcp.domain import ADMIN_TENANT_ID, Actor
from tests.support.inprocess import PUBLIC_URL, csrf_from, pkce_pair

ISSUER = f"{PUBLIC_URL}/t/default/oidc"
CALLBACK = "http://127.0.0.1:7777/callback"
ACTOR = Actor(tenant_id="default", sub="test-admin")
PASSWORD = "user passphrase 42"
API = "https://api.example.com/invoices"
OTHER_API = "http://localhost:9000"


@pytest.fixture
def user_id(core: IdentityCore) -> str:
    user = anyio.run(
        lambda: core.tenant_users.create("default", email="bob@example.com", password=PASSWORD, actor=ACTOR)
    )
    return user.id


@pytest.fixture
def api(core: IdentityCore) -> str:
    core.api_resources.create(
        "default", name="Invoices", identifier=API, actor=ACTOR,
        permissions=[("read:invoices", "Read invoices"), ("delete:invoices", "Delete invoices")],
    )  # fmt: skip
    core.api_resources.create(
        "default", name="Other", identifier=OTHER_API, actor=ACTOR, permissions=[("read:invoices", "Other read")]
    )
    return API


def _role(core: IdentityCore, name: str, role_type: str, *permissions: str, tenant: str = "default") -> Role:
    return core.roles.create(
        tenant, name=name, description="", role_type=role_type, actor=ACTOR,
        permissions=[(API, permission) for permission in permissions],
    )  # fmt: skip


def _app(core: IdentityCore, app_type: str, **kwargs: Any) -> Application:
    return core.applications.create(
        "default", name=f"My {app_type}", app_type=app_type, actor=ACTOR,
        redirect_uris=[] if app_type == "m2m" else [CALLBACK], **kwargs,
    )  # fmt: skip


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


class M2M:
    def __init__(self, client: TestClient, core: IdentityCore) -> None:
        self.app = _app(core, "m2m")
        self.headers = _basic(self.app.id, core.secrets.create("default", self.app.id, "temporary", ACTOR).value)
        self.client = client

    def token(self, **data: str | list[str]) -> Any:
        return self.client.post(
            "/t/default/oidc/token", data={"grant_type": "client_credentials", **data}, headers=self.headers
        )


# --- client credentials -------------------------------------------------------------------------------------


def test_client_credentials_with_a_resource_and_no_scope_gets_every_permission_the_apps_roles_hold(
    client: TestClient, core: IdentityCore, api: str
) -> None:
    m2m = M2M(client, core)
    role = _role(core, "Invoice service", "m2m", "read:invoices", "delete:invoices")
    core.roles.assign("default", [role.id], actor=ACTOR, application_id=m2m.app.id)

    response = m2m.token(resource=api)
    assert response.status_code == 200, response.text
    body = response.json()
    claims = _claims(body["access_token"])
    assert claims["aud"] == api and claims["sub"] == m2m.app.id and claims["client_id"] == m2m.app.id
    assert set(claims["scope"].split()) == {"read:invoices", "delete:invoices"}
    assert body["scope"] == claims["scope"]
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"

    # A scope narrows the token to the permissions named (and held).
    narrowed = m2m.token(resource=api, scope="read:invoices").json()
    assert _claims(narrowed["access_token"])["scope"] == "read:invoices"


def test_a_token_for_an_api_reads_the_apps_permissions_with_its_secrets_in_one_transaction(
    client: TestClient, core: IdentityCore, api: str
) -> None:
    m2m = M2M(client, core)
    role = _role(core, "Invoice service", "m2m", "read:invoices")
    core.roles.assign("default", [role.id], actor=ACTOR, application_id=m2m.app.id)
    transactions: list[object] = []

    def began(conn: object) -> None:
        transactions.append(conn)

    assert m2m.token().status_code == 200  # the first token loads the signing keys
    event.listen(core.db.engine, "begin", began)
    try:
        assert m2m.token().status_code == 200
        plain = len(transactions)
        transactions.clear()
        response = m2m.token(resource=api)
    finally:
        event.remove(core.db.engine, "begin", began)

    assert response.status_code == 200 and _claims(response.json()["access_token"])["scope"] == "read:invoices"
    assert len(transactions) == plain == 1


def test_permissions_the_app_does_not_hold_are_left_out_and_unknown_ones_are_refused(
    client: TestClient, core: IdentityCore, api: str
) -> None:
    m2m = M2M(client, core)
    role = _role(core, "Reader", "m2m", "read:invoices")
    core.roles.assign("default", [role.id], actor=ACTOR, application_id=m2m.app.id)

    held = m2m.token(resource=api, scope="read:invoices delete:invoices").json()
    assert _claims(held["access_token"])["scope"] == "read:invoices" and held["scope"] == "read:invoices"

    unknown = m2m.token(resource=api, scope="write:invoices")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_scope"
    assert "write:invoices" in unknown.json()["error_description"]


def test_an_app_without_roles_gets_a_token_with_no_permissions(
    client: TestClient, core: IdentityCore, api: str
) -> None:
    m2m = M2M(client, core)
    body = m2m.token(resource=api).json()
    assert _claims(body["access_token"])["aud"] == api and _claims(body["access_token"])["scope"] == ""


def test_unknown_or_several_resources_are_invalid_target_and_no_resource_is_as_before(
    client: TestClient, core: IdentityCore, api: str
) -> None:
    m2m = M2M(client, core)
    for data in ({"resource": "https://api.example.com/unknown"}, {"resource": [api, OTHER_API]}):
        response = m2m.token(**data)
        assert response.status_code == 400 and response.json()["error"] == "invalid_target", response.text
    # A resource with a character an error description may not hold is refused all the same, not a 500.
    assert m2m.token(resource='https://x/"\\é').json()["error"] == "invalid_target"

    plain = m2m.token().json()
    assert _claims(plain["access_token"])["aud"] == ISSUER and _claims(plain["access_token"])["scope"] == ""
    refused = m2m.token(scope="read:invoices").json()
    assert refused["error"] == "invalid_scope" and "resource=" in refused["error_description"]


def test_the_resources_token_lifetime_applies(client: TestClient, core: IdentityCore) -> None:
    resource = core.api_resources.create(
        "default", name="Short", identifier="https://short.example.com", actor=ACTOR, permissions=[("x", "")],
        access_token_ttl=300,
    )  # fmt: skip
    body = M2M(client, core).token(resource=resource.identifier).json()
    claims = _claims(body["access_token"])
    assert body["expires_in"] == 300 and claims["exp"] - claims["iat"] == 300


def test_deleting_a_role_a_permission_or_the_resource_shows_in_the_next_token(
    client: TestClient, core: IdentityCore, api: str
) -> None:
    m2m = M2M(client, core)
    reader = _role(core, "Reader", "m2m", "read:invoices")
    admin = _role(core, "Admin", "m2m", "read:invoices", "delete:invoices")
    core.roles.assign("default", [reader.id, admin.id], actor=ACTOR, application_id=m2m.app.id)

    def scope() -> set[str]:
        return set(_claims(m2m.token(resource=api).json()["access_token"])["scope"].split())

    assert scope() == {"read:invoices", "delete:invoices"}
    core.roles.delete("default", admin.id, ACTOR)
    assert scope() == {"read:invoices"}
    resource = core.api_resources.find("default", [api])[0]
    core.api_resources.update("default", resource.id, actor=ACTOR, permissions=[("delete:invoices", "")])
    assert scope() == set()
    core.api_resources.delete("default", resource.id, ACTOR)
    assert m2m.token(resource=api).json()["error"] == "invalid_target"


def test_resource_tokens_can_be_introspected_and_revoked(client: TestClient, core: IdentityCore, api: str) -> None:
    m2m = M2M(client, core)
    role = _role(core, "Reader", "m2m", "read:invoices")
    core.roles.assign("default", [role.id], actor=ACTOR, application_id=m2m.app.id)
    token = m2m.token(resource=api).json()["access_token"]

    def introspect() -> dict[str, Any]:
        return dict(client.post("/t/default/oidc/introspect", data={"token": token}, headers=m2m.headers).json())

    active = introspect()
    assert active["active"] is True and active["aud"] == api and active["scope"] == "read:invoices"
    revoked = client.post("/t/default/oidc/revoke", data={"token": token}, headers=m2m.headers)
    assert revoked.status_code == 200
    assert introspect() == {"active": False}
    # The userinfo endpoint is not the API: a resource token is refused there.
    assert client.get("/t/default/oidc/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_no_api_resource_or_role_crosses_tenants(client: TestClient, core: IdentityCore, api: str) -> None:
    core.tenants.create("acme", "Acme", owner_user_id="someone", actor=Actor(ADMIN_TENANT_ID, "someone"))
    # The same identifier may exist in another tenant, with its own permissions.
    core.api_resources.create(
        "acme", name="Acme invoices", identifier=api, actor=ACTOR, permissions=[("acme:only", "")]
    )
    acme_role = core.roles.create(
        "acme", name="Acme", description="", role_type="m2m", actor=ACTOR, permissions=[(api, "acme:only")]
    )
    m2m = M2M(client, core)
    # Another tenant's role is unknown here.
    with pytest.raises(Exception, match="No role"):
        core.roles.assign("default", [acme_role.id], actor=ACTOR, application_id=m2m.app.id)
    response = m2m.token(resource=api, scope="acme:only")
    assert response.json()["error"] == "invalid_scope"
    token = m2m.token(resource=api).json()["access_token"]
    assert _claims(token)["scope"] == "" and _claims(token)["iss"] == ISSUER
    # An API only another tenant has is unknown here.
    core.api_resources.create("acme", name="Acme only", identifier="https://acme.example", actor=ACTOR, permissions=[])
    assert m2m.token(resource="https://acme.example").json()["error"] == "invalid_target"


# --- authorization code and refresh -------------------------------------------------------------------------


def _authorize(client: TestClient, client_id: str, params: dict[str, Any]) -> Any:
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "state": "st",
        "code_challenge": challenge, "code_challenge_method": "S256", **params,
    }  # fmt: skip
    return client.get("/t/default/oidc/authorize", params=query, follow_redirects=False), verifier


def _sign_in(client: TestClient, client_id: str, **params: Any) -> tuple[str, str, str]:
    """Authorize with ``params`` and sign in as bob; (the code, the PKCE verifier, the consent page or '')."""
    response, verifier = _authorize(client, client_id, params)
    assert response.status_code == 302, response.text
    page = client.get(urlsplit(response.headers["location"]).path)
    interaction = re.search(r'name="interaction" value="([^"]+)"', page.text)
    assert interaction, page.text
    done = client.post(
        "/t/default/sign-in",
        data={"csrf_token": csrf_from(page.text), "interaction": interaction.group(1), "identifier": "bob@example.com",
              "password": PASSWORD},
        follow_redirects=False,
    )  # fmt: skip
    if done.status_code == 200:  # a consent page
        return "", verifier, done.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(done.headers["location"]).query).items()}
    return query["code"], verifier, ""


def _exchange(client: TestClient, client_id: str, code: str, verifier: str, **extra: str) -> Any:
    return client.post(
        "/t/default/oidc/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier,
              "client_id": client_id, **extra},
    )  # fmt: skip


def _refresh(client: TestClient, client_id: str, refresh_token: str, **extra: str) -> Any:
    return client.post(
        "/t/default/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **extra},
    )


SCOPE = "openid email offline_access read:invoices delete:invoices"


def test_a_user_gets_the_requested_permissions_their_roles_hold_and_refresh_re_evaluates_them(
    client: TestClient, core: IdentityCore, api: str, user_id: str
) -> None:
    spa = _app(core, "spa")
    reader = _role(core, "Reader", "user", "read:invoices")
    core.roles.assign("default", [reader.id], actor=ACTOR, user_id=user_id)

    code, verifier, _ = _sign_in(client, spa.id, scope=SCOPE, resource=api)
    response = _exchange(client, spa.id, code, verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    claims = _claims(tokens["access_token"])
    assert claims["aud"] == api and claims["sub"] == user_id and claims["scope"] == "read:invoices"
    assert tokens["scope"] == "read:invoices"
    # OpenID scopes stay with the ID token and userinfo.
    assert _claims(tokens["id_token"])["email"] == "bob@example.com" and tokens["refresh_token"]

    # A role given later counts at the next refresh; one taken away stops there.
    admin = _role(core, "Admin", "user", "delete:invoices")
    core.roles.assign("default", [admin.id], actor=ACTOR, user_id=user_id)
    refreshed = _refresh(client, spa.id, tokens["refresh_token"]).json()
    assert set(_claims(refreshed["access_token"])["scope"].split()) == {"read:invoices", "delete:invoices"}
    core.roles.remove("default", [reader.id, admin.id], actor=ACTOR, user_id=user_id)
    again = _refresh(client, spa.id, refreshed["refresh_token"]).json()
    assert _claims(again["access_token"])["scope"] == "" and _claims(again["access_token"])["aud"] == api

    # The issuer itself is always a target: a userinfo token with the OpenID scopes.
    userinfo = _refresh(client, spa.id, again["refresh_token"], resource=ISSUER).json()
    assert _claims(userinfo["access_token"])["aud"] == ISSUER
    assert _claims(userinfo["access_token"])["scope"] == "openid email offline_access"
    bearer = {"Authorization": f"Bearer {userinfo['access_token']}"}
    assert client.get("/t/default/oidc/userinfo", headers=bearer).json()["email"] == "bob@example.com"

    # A resource the grant was not authorized for is invalid_target, and the refresh token stays usable.
    refused = _refresh(client, spa.id, userinfo["refresh_token"], resource=OTHER_API)
    assert refused.json()["error"] == "invalid_target"
    assert _refresh(client, spa.id, userinfo["refresh_token"]).status_code == 200


def test_a_refresh_may_name_any_resource_the_grant_was_authorized_for(
    client: TestClient, core: IdentityCore, api: str, user_id: str
) -> None:
    spa = _app(core, "spa")
    core.roles.assign("default", [_role(core, "Reader", "user", "read:invoices").id], actor=ACTOR, user_id=user_id)
    code, verifier, _ = _sign_in(client, spa.id, scope=SCOPE, resource=[api, OTHER_API])
    # Several resources and none named at the token endpoint: the token is for the issuer (userinfo).
    tokens = _exchange(client, spa.id, code, verifier).json()
    assert _claims(tokens["access_token"])["aud"] == ISSUER
    first = _refresh(client, spa.id, tokens["refresh_token"], resource=api).json()
    assert _claims(first["access_token"])["aud"] == api and _claims(first["access_token"])["scope"] == "read:invoices"
    second = _refresh(client, spa.id, first["refresh_token"], resource=OTHER_API).json()
    # The other API's read:invoices is its own permission, which no role grants.
    assert _claims(second["access_token"])["aud"] == OTHER_API and _claims(second["access_token"])["scope"] == ""


def test_the_code_exchange_may_name_one_of_the_authorized_resources_only(
    client: TestClient, core: IdentityCore, api: str, user_id: str
) -> None:
    spa = _app(core, "spa")
    code, verifier, _ = _sign_in(client, spa.id, scope=SCOPE, resource=api)
    refused = _exchange(client, spa.id, code, verifier, resource=OTHER_API)
    assert refused.json()["error"] == "invalid_target"


def test_deleting_the_resource_refuses_the_next_refresh(
    client: TestClient, core: IdentityCore, api: str, user_id: str
) -> None:
    spa = _app(core, "spa")
    code, verifier, _ = _sign_in(client, spa.id, scope=SCOPE, resource=api)
    tokens = _exchange(client, spa.id, code, verifier).json()
    resource = core.api_resources.find("default", [api])[0]
    core.api_resources.delete("default", resource.id, ACTOR)
    assert _refresh(client, spa.id, tokens["refresh_token"]).json()["error"] == "invalid_target"


def test_an_authorization_request_for_an_unknown_resource_or_permission_is_refused_to_the_app(
    client: TestClient, core: IdentityCore, api: str
) -> None:
    spa = _app(core, "spa")
    response, _ = _authorize(client, spa.id, {"scope": "openid", "resource": "https://nope.example.com"})
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert response.headers["location"].startswith(CALLBACK) and query["error"] == ["invalid_target"]
    response, _ = _authorize(client, spa.id, {"scope": "openid write:invoices", "resource": api})
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["invalid_scope"]
    response, _ = _authorize(client, spa.id, {"scope": "openid read:invoices"})
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["invalid_scope"]


def test_the_consent_page_of_a_third_party_app_names_the_api_permissions(
    client: TestClient, core: IdentityCore, api: str, user_id: str
) -> None:
    partner = _app(core, "spa", third_party=True)
    _, _, page = _sign_in(client, partner.id, scope="openid read:invoices", resource=api)
    assert "Invoices: Read invoices (read:invoices)" in page
    assert "Delete invoices" not in page
