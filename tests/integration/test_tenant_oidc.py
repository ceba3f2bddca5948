"""Each tenant is an OpenID Provider: discovery, hosted sign-in, code + PKCE, ID tokens, userinfo, refresh,
client credentials with temporary secrets, introspection, revocation, end-session, and tenant isolation."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, urlsplit

import anyio
import jwt
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import ADMIN_TENANT_ID, Actor
from tests.support.clock import Clock
from tests.support.inprocess import PUBLIC_URL, csrf_from, pkce_pair

ISSUER = f"{PUBLIC_URL}/t/default/oidc"
CALLBACK = "http://127.0.0.1:7777/callback"
ACTOR = Actor(tenant_id="default", sub="test-admin")
USER_PASSWORD = "user passphrase 42"


@pytest.fixture
def user_id(core: IdentityCore) -> str:
    user = anyio.run(
        lambda: core.tenant_users.create(
            "default", email="bob@example.com", username="bob", name="Bob", password=USER_PASSWORD, actor=ACTOR
        )
    )
    return user.id


def _app(core: IdentityCore, app_type: str = "traditional", **kwargs: object) -> Application:
    return core.applications.create(
        "default",
        name=f"My {app_type} app",
        app_type=app_type,
        actor=ACTOR,
        redirect_uris=[] if app_type == "m2m" else [CALLBACK],
        **kwargs,  # type: ignore[arg-type]
    )


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _sign_in_through_hosted_page(
    client: TestClient, client_id: str, *, scope: str = "openid profile email offline_access", pkce: bool = True
) -> tuple[dict[str, str], str]:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": scope,
        "state": "st",
        "nonce": "no-nce",
    }
    if pkce:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    response = client.get("/t/default/oidc/authorize", params=params, follow_redirects=False)
    assert response.status_code == 302, response.text
    page = client.get(urlsplit(response.headers["location"]).path)
    assert "Sign in to Default" in page.text
    interaction = re.search(r'name="interaction" value="([^"]+)"', page.text)
    assert interaction
    done = client.post(
        "/t/default/sign-in",
        data={
            "csrf_token": csrf_from(page.text),
            "interaction": interaction.group(1),
            "identifier": "bob@example.com",
            "password": USER_PASSWORD,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(done.headers["location"]).query).items()}
    return query, verifier


def test_discovery_document_describes_the_tenant_issuer(client: TestClient) -> None:
    document = client.get("/t/default/oidc/.well-known/openid-configuration").json()
    assert document["issuer"] == ISSUER
    assert document["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert document["userinfo_endpoint"] == f"{ISSUER}/userinfo"
    assert document["end_session_endpoint"] == f"{ISSUER}/end-session"
    assert "client_credentials" in document["grant_types_supported"]
    assert "registration_endpoint" not in document
    assert set(document["scopes_supported"]) == {"openid", "profile", "email", "offline_access"}
    assert client.get("/t/nope/oidc/.well-known/openid-configuration").status_code == 404
    assert client.get("/t/admin/oidc/.well-known/openid-configuration").status_code == 404


def test_traditional_app_signs_a_user_in_and_gets_verified_tokens(
    client: TestClient, core: IdentityCore, user_id: str
) -> None:
    app = _app(core)
    secret = core.secrets.create("default", app.id, "temporary", ACTOR)
    query, verifier = _sign_in_through_hosted_page(client, app.id)
    assert query["state"] == "st" and query["iss"] == ISSUER

    response = client.post(
        "/t/default/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
        headers=_basic(app.id, secret.value),
    )
    assert response.status_code == 200, response.text
    tokens = response.json()

    jwks = client.get("/t/default/oidc/jwks").json()
    header = jwt.get_unverified_header(tokens["id_token"])
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    id_claims = jwt.decode(tokens["id_token"], key, algorithms=["ES256"], audience=app.id, issuer=ISSUER)
    assert id_claims["sub"] == user_id and id_claims["nonce"] == "no-nce" and id_claims["at_hash"]
    assert id_claims["email"] == "bob@example.com"
    assert id_claims["email_verified"] is False  # created by an administrator who did not vouch for the address

    userinfo = client.get("/t/default/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.json() == {
        "sub": user_id, "email": "bob@example.com", "email_verified": False, "name": "Bob", "preferred_username": "bob"
    }  # fmt: skip

    rotated = client.post(
        "/t/default/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=_basic(app.id, secret.value),
    )
    assert rotated.status_code == 200 and rotated.json()["refresh_token"] != tokens["refresh_token"]
    reused = client.post(
        "/t/default/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=_basic(app.id, secret.value),
    )
    assert reused.json()["error"] == "invalid_grant"


def test_rs256_can_be_chosen_for_id_tokens(client: TestClient, core: IdentityCore, user_id: str) -> None:
    app = _app(core, "spa", id_token_alg="RS256")
    query, verifier = _sign_in_through_hosted_page(client, app.id, scope="openid")
    tokens = client.post(
        "/t/default/oidc/token",
        data={
            "grant_type": "authorization_code", "code": query["code"], "redirect_uri": CALLBACK,
            "code_verifier": verifier, "client_id": app.id,
        },
    ).json()  # fmt: skip
    assert jwt.get_unverified_header(tokens["id_token"])["alg"] == "RS256"
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "ES256"


def test_public_apps_must_use_pkce_but_confidential_ones_may_skip_it(
    client: TestClient, core: IdentityCore, user_id: str
) -> None:
    spa = _app(core, "spa")
    response = client.get(
        "/t/default/oidc/authorize",
        params={"response_type": "code", "client_id": spa.id, "redirect_uri": CALLBACK, "scope": "openid"},
        follow_redirects=False,
    )
    assert "error=invalid_request" in response.headers["location"]

    web = _app(core)
    secret = core.secrets.create("default", web.id, "temporary", ACTOR)
    query, _ = _sign_in_through_hosted_page(client, web.id, scope="openid", pkce=False)
    token = client.post(
        "/t/default/oidc/token",
        data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": CALLBACK},
        headers=_basic(web.id, secret.value),
    )
    assert token.status_code == 200, token.text


def test_m2m_client_credentials_with_a_temporary_secret_until_it_expires_or_is_revoked(
    client: TestClient, core: IdentityCore, clock: Clock
) -> None:
    app = _app(core, "m2m")
    secret = core.secrets.create("default", app.id, "temporary", ACTOR)

    def token() -> dict[str, str]:
        response = client.post(
            "/t/default/oidc/token", data={"grant_type": "client_credentials"}, headers=_basic(app.id, secret.value)
        )
        return dict(response.json())

    issued = token()
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    assert claims["sub"] == app.id and claims["aud"] == ISSUER and "refresh_token" not in issued

    core.secrets.revoke_temporary("default", app.id, ACTOR)
    assert token()["error"] == "invalid_client"

    secret = core.secrets.create("default", app.id, "temporary", ACTOR)
    assert "access_token" in token()
    clock.advance(3601)  # temporary secrets live an hour at most
    assert token()["error"] == "invalid_client"


def test_tokens_of_one_tenant_are_refused_by_another(client: TestClient, core: IdentityCore, user_id: str) -> None:
    core.tenants.create("acme", "Acme", owner_user_id="someone", actor=Actor(ADMIN_TENANT_ID, "someone"))
    app = _app(core, "spa")
    query, verifier = _sign_in_through_hosted_page(client, app.id, scope="openid")
    tokens = client.post(
        "/t/default/oidc/token",
        data={
            "grant_type": "authorization_code", "code": query["code"], "redirect_uri": CALLBACK,
            "code_verifier": verifier, "client_id": app.id,
        },
    ).json()  # fmt: skip
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/t/default/oidc/userinfo", headers=bearer).status_code == 200
    assert client.get("/t/acme/oidc/userinfo", headers=bearer).status_code == 401
    # And another tenant's application id is unknown here.
    other = core.applications.create("acme", name="Acme app", app_type="spa", actor=ACTOR, redirect_uris=[CALLBACK])
    response = client.get(
        "/t/default/oidc/authorize",
        params={"response_type": "code", "client_id": other.id, "redirect_uri": CALLBACK, "scope": "openid"},
        follow_redirects=False,
    )
    assert response.status_code == 400


def test_end_session_signs_out_and_returns_only_to_a_registered_uri(
    client: TestClient, core: IdentityCore, user_id: str
) -> None:
    app = _app(core, "spa", post_logout_redirect_uris=["http://127.0.0.1:7777/bye"])
    _sign_in_through_hosted_page(client, app.id, scope="openid")
    assert client.cookies.get("idp_session_default")

    refused = client.get(
        "/t/default/oidc/end-session", params={"client_id": app.id, "post_logout_redirect_uri": "https://evil.example/"}
    )
    assert refused.status_code == 400

    params = {"client_id": app.id, "post_logout_redirect_uri": "http://127.0.0.1:7777/bye", "state": "x"}
    # Without an id_token_hint the user confirms first (no logout CSRF): see test_logout_csrf.py.
    page = client.get("/t/default/oidc/end-session", params=params)
    done = client.post(
        "/t/default/oidc/end-session",
        data={**params, "confirm": "yes", "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "http://127.0.0.1:7777/bye?state=x"
    # Signed out: the next authorization asks for the password again.
    _sign_in_through_hosted_page(client, app.id, scope="openid")


def test_introspection_tells_a_client_about_its_own_tokens_only(
    client: TestClient, core: IdentityCore, user_id: str
) -> None:
    app = _app(core)
    secret = core.secrets.create("default", app.id, "temporary", ACTOR)
    query, verifier = _sign_in_through_hosted_page(client, app.id, scope="openid offline_access")
    tokens = client.post(
        "/t/default/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
        headers=_basic(app.id, secret.value),
    ).json()
    active = client.post(
        "/t/default/oidc/introspect", data={"token": tokens["access_token"]}, headers=_basic(app.id, secret.value)
    ).json()
    assert active["active"] is True and active["sub"] == user_id
    refresh = client.post(
        "/t/default/oidc/introspect", data={"token": tokens["refresh_token"]}, headers=_basic(app.id, secret.value)
    ).json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"

    other = _app(core)
    other_secret = core.secrets.create("default", other.id, "temporary", ACTOR)
    assert client.post(
        "/t/default/oidc/introspect",
        data={"token": tokens["access_token"]},
        headers=_basic(other.id, other_secret.value),
    ).json() == {"active": False}
    assert client.post("/t/default/oidc/introspect", data={"token": "x"}).status_code == 401


def test_spa_cors_origins_are_allowed_on_the_token_endpoint_and_others_are_not(
    client: TestClient, core: IdentityCore
) -> None:
    _app(core, "spa", cors_origins=["http://localhost:5173"])
    allowed = client.options(
        "/t/default/oidc/token",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status_code == 204 and allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
    denied = client.options(
        "/t/default/oidc/token", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in denied.headers


def test_deleting_an_application_ends_its_tokens(client: TestClient, core: IdentityCore, user_id: str) -> None:
    app = _app(core, "spa")
    query, verifier = _sign_in_through_hosted_page(client, app.id, scope="openid")
    tokens = client.post(
        "/t/default/oidc/token",
        data={
            "grant_type": "authorization_code", "code": query["code"], "redirect_uri": CALLBACK,
            "code_verifier": verifier, "client_id": app.id,
        },
    ).json()  # fmt: skip
    core.applications.delete("default", app.id, ACTOR)
    response = client.get("/t/default/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 401


def _authorize_and_sign_in(client: TestClient, client_id: str) -> tuple[str, str]:
    """Start an authorization and sign in; returns (the page after sign-in, its HTML or redirect Location)."""
    _, challenge = pkce_pair()
    response = client.get(
        "/t/default/oidc/authorize",
        params={
            "response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "scope": "openid email",
            "state": "st", "code_challenge": challenge, "code_challenge_method": "S256",
        },
        follow_redirects=False,
    )  # fmt: skip
    page = client.get(urlsplit(response.headers["location"]).path)
    assert 'name="identifier"' in page.text, "expected the sign-in page"
    interaction = re.search(r'name="interaction" value="([^"]+)"', page.text)
    assert interaction
    done = client.post(
        "/t/default/sign-in",
        data={
            "csrf_token": csrf_from(page.text), "interaction": interaction.group(1),
            "identifier": "bob@example.com", "password": USER_PASSWORD,
        },
        follow_redirects=False,
    )  # fmt: skip
    if done.status_code == 303:
        return "redirect", done.headers["location"]
    return "page", done.text


def test_third_party_apps_ask_for_consent_once_and_first_party_apps_never(
    client: TestClient, core: IdentityCore, user_id: str
) -> None:
    first_party = _app(core, "spa")
    kind, location = _authorize_and_sign_in(client, first_party.id)
    assert kind == "redirect" and location.startswith(f"{CALLBACK}?code=")

    partner = _app(core, "spa", third_party=True)
    client.cookies.clear()
    kind, html = _authorize_and_sign_in(client, partner.id)
    assert kind == "page" and "is not made by Default" in html and "See your email address" in html
    interaction = re.search(r'action="(/t/default/interaction/[^"]+/consent)"', html)
    assert interaction

    denied = client.post(
        interaction.group(1), data={"csrf_token": csrf_from(html), "action": "deny"}, follow_redirects=False
    )
    assert "error=access_denied" in denied.headers["location"]

    # Still signed in: the next authorization goes straight to the consent page.
    page = client.get(urlsplit(client.get(
        "/t/default/oidc/authorize",
        params={"response_type": "code", "client_id": partner.id, "redirect_uri": CALLBACK, "scope": "openid email",
                "code_challenge": pkce_pair()[1], "code_challenge_method": "S256"},
        follow_redirects=False,
    ).headers["location"]).path)  # fmt: skip
    allowed_form = re.search(r'action="(/t/default/interaction/[^"]+/consent)"', page.text)
    assert allowed_form
    allowed = client.post(
        allowed_form.group(1), data={"csrf_token": csrf_from(page.text), "action": "approve"}, follow_redirects=False
    )
    assert allowed.headers["location"].startswith(f"{CALLBACK}?code=")

    # Consent is remembered: the next sign-in goes straight back to the app.
    again = client.get(urlsplit(client.get(
        "/t/default/oidc/authorize",
        params={"response_type": "code", "client_id": partner.id, "redirect_uri": CALLBACK, "scope": "openid email",
                "code_challenge": pkce_pair()[1], "code_challenge_method": "S256"},
        follow_redirects=False,
    ).headers["location"]).path, follow_redirects=False)  # fmt: skip
    assert again.status_code == 303 and again.headers["location"].startswith(f"{CALLBACK}?code=")
