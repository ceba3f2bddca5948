"""The OAuth 2.0 Security Best Current Practice (RFC 9700), attack by attack, against both issuers: the admin one
(/oauth, for MCP clients) and a tenant's (/t/default/oidc, for applications).

Covered elsewhere, not repeated here:

- test_oauth_authorize.py: an unregistered redirect URI shows an error page and never redirects; loopback redirect
  URIs differing in path, path case, trailing slash, query, fragment, host or scheme are refused (any port is
  fine, RFC 8252); PKCE without a challenge, with ``plain`` or without a method is refused at /oauth/authorize;
  a repeated ``code_challenge`` is refused; error redirects carry ``state`` and ``iss``.
- test_oauth_token.py: wrong or missing ``code_verifier``; a code replay refuses the replay and revokes the grant
  (refresh token refused, family revoked); reuse of a rotated refresh token revokes the family (the newest refresh
  token refused); codes and refresh tokens of another client; ``redirect_uri`` different from the request's.
- test_pages.py / test_console.py: CSRF on admin sign-in, consent, sign-out and the console's secret form;
  return paths (``next``) stay on this site; pages cannot be framed.
- test_oauth_metadata.py: ``authorization_response_iss_parameter_supported`` is advertised.
- test_tenant_oidc.py: public applications must use PKCE; post-logout redirects only to registered URIs.

Added here: redirect URI attacks on a registered non-loopback https URI (both issuers), open-redirect attempts
where another parameter is wrong too, PKCE downgrades at the token endpoint, code replay and refresh reuse shown to
stop the access tokens already issued (at /mcp and at userinfo), ``iss`` on every kind of authorization response
of both issuers, and CSRF on the setup page and the tenant's hosted sign-in and consent forms.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import httpx
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import DEFAULT_TENANT_ID, Actor
from idp_mcp.settings import Settings
from tests.support.inprocess import (
    PUBLIC_URL,
    authorization_params,
    authorize,
    csrf_from,
    exchange_code,
    pkce_pair,
    query_of,
    refresh,
    register_client,
)
from tests.support.mcp_http import McpSession
from tests.support.tokens import TENANT_CALLBACK, tenant_authorization_code, tenant_issuer

APP_CALLBACK = "https://app.example.com/callback"
USER_EMAIL = "bob@example.com"
USER_PASSWORD = "user passphrase 42"
ACTOR = Actor(DEFAULT_TENANT_ID, "test")
TENANT_ISSUER = tenant_issuer()


@pytest.fixture
def user(core: IdentityCore) -> str:
    created = anyio.run(
        lambda: core.tenant_users.create(DEFAULT_TENANT_ID, email=USER_EMAIL, password=USER_PASSWORD, actor=ACTOR)
    )
    return created.id


@dataclass
class Issuer:
    """One authorization server, and a client of it registered with ``APP_CALLBACK`` (and the loopback callback)."""

    name: str
    issuer: str
    authorize_path: str
    client_id: str

    def params(self, **overrides: str | None) -> dict[str, str]:
        scope = "idp:read" if self.name == "admin" else "openid"
        return authorization_params(self.client_id, **{"redirect_uri": APP_CALLBACK, "scope": scope, **overrides})

    def start(self, client: TestClient, **overrides: str | None) -> httpx.Response:
        return client.get(f"{self.authorize_path}?{urlencode(self.params(**overrides))}", follow_redirects=False)


@pytest.fixture(params=["admin", "tenant"])
def issuer(request: pytest.FixtureRequest, client: TestClient, core: IdentityCore) -> Issuer:
    if request.param == "admin":
        registered = register_client(client, redirect_uris=[APP_CALLBACK, TENANT_CALLBACK])
        return Issuer("admin", PUBLIC_URL, "/oauth/authorize", registered["client_id"])
    application = core.applications.create(
        DEFAULT_TENANT_ID, name="Web app", app_type="spa", actor=ACTOR, redirect_uris=[APP_CALLBACK, TENANT_CALLBACK]
    )
    return Issuer("tenant", TENANT_ISSUER, "/t/default/oidc/authorize", application.id)


def assert_error_page(response: httpx.Response) -> None:
    """An HTML page for the user, never a redirect: an unverified redirect URI receives nothing."""
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")


def is_interaction_redirect(response: httpx.Response) -> bool:
    path = urlsplit(response.headers.get("location", "")).path
    return response.status_code == 302 and "/interaction/" in path


# --- redirect URIs: exact match on a registered https URI ---------------------------------------------------

NOT_THE_REGISTERED_URI = {
    "path_case": "https://app.example.com/Callback",
    "host_case": "https://APP.example.com/callback",
    "scheme_case": "HTTPS://app.example.com/callback",
    "path_traversal": "https://app.example.com/callback/../evil",
    "encoded_path_traversal": "https://app.example.com/callback/%2e%2e/evil",
    "encoded_slash_traversal": "https://app.example.com/callback/..%2fevil",
    "added_query": "https://app.example.com/callback?next=https://evil.example/",
    "added_fragment": "https://app.example.com/callback#evil",
    "trailing_slash": "https://app.example.com/callback/",
    "other_port": "https://app.example.com:8443/callback",
    "explicit_default_port": "https://app.example.com:443/callback",
    "http_downgrade": "http://app.example.com/callback",
    "userinfo_naming_the_app_before_the_attacker": "https://app.example.com@evil.example/callback",
    "userinfo_naming_the_attacker": "https://evil.example@app.example.com/callback",
    "encoded_at_sign": "https://app.example.com%40evil.example/callback",
    "backslash_confusion": "https://app.example.com\\@evil.example/callback",
    "host_suffix": "https://app.example.com.evil.example/callback",
    "subdomain": "https://evil.app.example.com/callback",
    "scheme_relative": "//app.example.com/callback",
    "nul_byte": "https://app.example.com/callback%00",
    "leading_space": " https://app.example.com/callback",
    "double_quote": 'https://app.example.com/callback"',
    "non_ascii_path": "https://app.example.com/callbäck",
}


@pytest.mark.parametrize("redirect_uri", NOT_THE_REGISTERED_URI.values(), ids=NOT_THE_REGISTERED_URI.keys())
def test_a_redirect_uri_that_is_not_exactly_the_registered_one_gets_the_error_page(
    client: TestClient, issuer: Issuer, redirect_uri: str
) -> None:
    assert_error_page(issuer.start(client, redirect_uri=redirect_uri))


def test_the_registered_https_redirect_uri_itself_is_accepted(client: TestClient, issuer: Issuer) -> None:
    assert is_interaction_redirect(issuer.start(client))


OTHER_MISTAKES: dict[str, dict[str, str | None]] = {
    "unsupported_response_type": {"response_type": "token"},
    "unknown_scope": {"scope": "openid idp:superuser"},
    "no_pkce": {"code_challenge": None, "code_challenge_method": None},
    "plain_pkce": {"code_challenge_method": "plain"},
    "unknown_resource": {"resource": "https://other.example/api"},
    "prompt_none_without_a_session": {"prompt": "none"},
}


@pytest.mark.parametrize("mistake", OTHER_MISTAKES.values(), ids=OTHER_MISTAKES.keys())
def test_an_unregistered_redirect_uri_never_receives_an_error_redirect(
    client: TestClient, issuer: Issuer, mistake: dict[str, str | None]
) -> None:
    """The classic open redirector: a request wrong in some other way must not bounce the browser to the
    attacker's URI with an error; the redirect URI is checked first."""
    response = issuer.start(client, redirect_uri="https://evil.example/callback", **mistake)

    assert_error_page(response)
    assert "evil.example" not in response.headers.get("location", "")


def test_an_unknown_client_never_redirects(client: TestClient, issuer: Issuer) -> None:
    response = client.get(
        f"{issuer.authorize_path}?{urlencode(authorization_params('no-such-client', redirect_uri=APP_CALLBACK))}",
        follow_redirects=False,
    )

    assert_error_page(response)


# --- PKCE downgrades ----------------------------------------------------------------------------------------


def test_the_challenge_itself_as_verifier_is_refused(client: TestClient) -> None:
    """A ``plain`` downgrade at the token endpoint: the code was issued for S256, so the verifier is hashed, and
    sending the challenge itself (which an attacker saw in the authorization request) fails."""
    client_id = register_client(client)["client_id"]
    result = authorize(client, client_id)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(result.verifier.encode()).digest()).rstrip(b"=").decode()

    response = exchange_code(client, client_id, result, code_verifier=challenge)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"
    # A wrong verifier spends the code: verifiers cannot be guessed at, one try per code.
    assert exchange_code(client, client_id, result).json()["error"] == "invalid_grant"


def test_a_code_issued_without_a_challenge_is_not_redeemed_with_a_verifier(
    client: TestClient, core: IdentityCore, user: str
) -> None:
    """RFC 9700 §2.1.1: a token request with a ``code_verifier`` for a code that had no ``code_challenge`` is
    refused (the PKCE downgrade attack: an attacker strips the challenge, then injects the stolen code)."""
    application = core.applications.create(
        DEFAULT_TENANT_ID, name="Confidential", app_type="traditional", actor=ACTOR, redirect_uris=[TENANT_CALLBACK]
    )
    secret = core.secrets.create(DEFAULT_TENANT_ID, application.id, "temporary", ACTOR)
    code, verifier = tenant_authorization_code(
        client, application.id, identifier=USER_EMAIL, password=USER_PASSWORD, scope="openid", pkce=False
    )

    response = client.post(
        "/t/default/oidc/token",
        data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": TENANT_CALLBACK,
            "code_verifier": verifier,
        },
        auth=(application.id, secret.value),
    )  # fmt: skip

    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("invalid_request", "invalid_grant")
    assert "access_token" not in response.json()


@pytest.mark.parametrize(
    "overrides",
    [{"code_challenge_method": "plain"}, {"code_challenge_method": None}, {"code_challenge_method": "S512"}],
    ids=["plain", "missing-method", "unknown-method"],
)
def test_pkce_downgrades_at_the_tenant_issuer_are_refused_even_for_confidential_applications(
    client: TestClient, core: IdentityCore, overrides: dict[str, str | None]
) -> None:
    application = core.applications.create(
        DEFAULT_TENANT_ID, name="Confidential", app_type="traditional", actor=ACTOR, redirect_uris=[APP_CALLBACK]
    )
    params = authorization_params(application.id, redirect_uri=APP_CALLBACK, scope="openid", **overrides)

    response = client.get(f"/t/default/oidc/authorize?{urlencode(params)}", follow_redirects=False)

    assert response.status_code == 302, response.text
    assert query_of(response.headers["location"])["error"] == "invalid_request"


# --- replays stop the access tokens already issued ----------------------------------------------------------


def _mcp_status(client: TestClient, access_token: str) -> int:
    return McpSession(client, access_token).initialize_response().status_code


def test_a_code_replay_stops_the_access_token_of_the_first_exchange_at_mcp(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]
    result = authorize(client, client_id)
    first = exchange_code(client, client_id, result).json()
    # Not presented before the replay: the verifier caches a grant's revocation status for a few seconds.

    replay = exchange_code(client, client_id, result)

    assert replay.json()["error"] == "invalid_grant"
    assert _mcp_status(client, first["access_token"]) == 401


def test_refresh_token_reuse_stops_every_access_token_of_the_family_at_mcp(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]
    first = exchange_code(client, client_id, authorize(client, client_id)).json()
    second = refresh(client, client_id, first["refresh_token"]).json()

    reuse = refresh(client, client_id, first["refresh_token"])

    assert reuse.json()["error"] == "invalid_grant"
    assert _mcp_status(client, second["access_token"]) == 401
    assert _mcp_status(client, first["access_token"]) == 401


def _tenant_tokens(client: TestClient, client_id: str, code: str, verifier: str) -> httpx.Response:
    return client.post(
        "/t/default/oidc/token",
        data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": TENANT_CALLBACK,
            "code_verifier": verifier, "client_id": client_id,
        },
    )  # fmt: skip


def _userinfo_status(client: TestClient, access_token: str) -> int:
    return client.get("/t/default/oidc/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def test_a_code_replay_stops_the_access_token_of_the_first_exchange_at_userinfo(
    client: TestClient, core: IdentityCore, user: str
) -> None:
    application = core.applications.create(
        DEFAULT_TENANT_ID, name="SPA", app_type="spa", actor=ACTOR, redirect_uris=[TENANT_CALLBACK]
    )
    code, verifier = tenant_authorization_code(client, application.id, identifier=USER_EMAIL, password=USER_PASSWORD)
    first = _tenant_tokens(client, application.id, code, verifier).json()
    assert _userinfo_status(client, first["access_token"]) == 200

    replay = _tenant_tokens(client, application.id, code, verifier)

    assert replay.json()["error"] == "invalid_grant"
    assert _userinfo_status(client, first["access_token"]) == 401


def test_refresh_token_reuse_stops_the_familys_access_tokens_at_userinfo(
    client: TestClient, core: IdentityCore, user: str
) -> None:
    application = core.applications.create(
        DEFAULT_TENANT_ID, name="SPA", app_type="spa", actor=ACTOR, redirect_uris=[TENANT_CALLBACK]
    )
    code, verifier = tenant_authorization_code(client, application.id, identifier=USER_EMAIL, password=USER_PASSWORD)
    first = _tenant_tokens(client, application.id, code, verifier).json()
    form = {"grant_type": "refresh_token", "client_id": application.id}
    second = client.post("/t/default/oidc/token", data={**form, "refresh_token": first["refresh_token"]}).json()

    reuse = client.post("/t/default/oidc/token", data={**form, "refresh_token": first["refresh_token"]})

    assert reuse.json()["error"] == "invalid_grant"
    assert _userinfo_status(client, second["access_token"]) == 401


# --- mix-up defence: iss on every authorization response (RFC 9207) -----------------------------------------

ERROR_RESPONSES: dict[str, dict[str, str | None]] = {
    "invalid_request": {"code_challenge": None, "code_challenge_method": None},
    "invalid_scope": {"scope": "openid idp:superuser"},
    "unsupported_response_type": {"response_type": "token"},
    "invalid_target": {"resource": "https://other.example/api"},
}


@pytest.mark.parametrize(("error", "overrides"), ERROR_RESPONSES.items(), ids=ERROR_RESPONSES.keys())
def test_every_error_response_names_its_issuer(
    client: TestClient, issuer: Issuer, error: str, overrides: dict[str, str | None]
) -> None:
    response = issuer.start(client, **overrides)

    if issuer.name == "admin":
        # A self-registered client's redirect URI is not proven (RFC 9700 §4.11.2): the error stays on our page.
        # (The admin issuer's redirected errors, prompt=none to an approved client, carry iss too: test_open_redirect.)
        assert_error_page(response)
        return
    assert response.status_code == 302, response.text
    params = query_of(response.headers["location"])
    assert response.headers["location"].startswith(f"{APP_CALLBACK}?")
    assert params["error"] == error
    assert params["iss"] == issuer.issuer
    assert params["state"] == "state-123"


def test_a_login_required_response_names_the_tenant_issuer(client: TestClient, core: IdentityCore) -> None:
    """prompt=none without a session (OpenID Connect; the admin issuer's MCP clients do not send it)."""
    application = core.applications.create(
        DEFAULT_TENANT_ID, name="SPA", app_type="spa", actor=ACTOR, redirect_uris=[APP_CALLBACK]
    )
    params = authorization_params(application.id, redirect_uri=APP_CALLBACK, scope="openid", prompt="none")

    response = client.get(f"/t/default/oidc/authorize?{urlencode(params)}", follow_redirects=False)

    assert response.headers["location"].startswith(f"{APP_CALLBACK}?")
    params = query_of(response.headers["location"])
    assert (params["error"], params["state"], params["iss"]) == ("login_required", "state-123", TENANT_ISSUER)


ODD_CHARACTERS = ['co"de', "co\\de", "cödé", "code\x00", "code\n"]


@pytest.mark.parametrize("response_type", ODD_CHARACTERS, ids=["quote", "backslash", "non-ascii", "nul", "newline"])
def test_a_response_type_with_odd_characters_is_refused_without_a_server_error(
    client: TestClient, issuer: Issuer, response_type: str
) -> None:
    """authlib quotes the response type in its error description, which only printable ASCII without '"' and
    '\\' may be: these turned into a 500 before the server refused them itself."""
    response = issuer.start(client, response_type=response_type)

    assert response.status_code in (302, 400), response.text
    if response.status_code == 302:
        assert query_of(response.headers["location"])["error"] == "unsupported_response_type"


def test_the_success_response_names_its_issuer_at_both_issuers(
    client: TestClient, core: IdentityCore, user: str
) -> None:
    client_id = register_client(client)["client_id"]
    admin = authorize(client, client_id)
    application = core.applications.create(
        DEFAULT_TENANT_ID, name="SPA", app_type="spa", actor=ACTOR, redirect_uris=[TENANT_CALLBACK]
    )

    tenant_code, _ = tenant_authorization_code(  # asserts iss on the tenant's redirect
        client, application.id, identifier=USER_EMAIL, password=USER_PASSWORD
    )

    assert admin.params["iss"] == PUBLIC_URL and admin.params["code"]
    assert tenant_code


def test_the_issuers_are_distinct(client: TestClient) -> None:
    """A client talking to several of this server's issuers can tell the responses apart by iss alone."""
    admin = client.get("/.well-known/oauth-authorization-server").json()
    tenant = client.get("/t/default/oidc/.well-known/openid-configuration").json()

    assert admin["issuer"] != tenant["issuer"]
    assert tenant["authorization_response_iss_parameter_supported"] is True


# --- CSRF on the forms not covered in test_pages.py ---------------------------------------------------------


@pytest.fixture
def unset_up_client(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, IdentityCore]]:
    """A server without any administrator yet: the setup page is open (to this machine without the setup code:
    see test_setup_code.py)."""
    settings = Settings(public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url)
    core = IdentityCore.from_settings(settings)
    core.bootstrap()
    with TestClient(create_app(settings, core), base_url=PUBLIC_URL, client=("127.0.0.1", 50000)) as client:
        yield client, core
    core.close()


def test_setup_without_the_csrf_token_creates_no_administrator(
    unset_up_client: tuple[TestClient, IdentityCore],
) -> None:
    client, core = unset_up_client
    page = client.get("/setup")
    form = {"email": "owner@example.com", "password": "a long passphrase", "password_confirm": "a long passphrase"}

    refused = [
        client.post("/setup", data=form, follow_redirects=False),
        client.post("/setup", data={**form, "csrf_token": "forged-value-000000000000"}, follow_redirects=False),
    ]

    assert [response.status_code for response in refused] == [403, 403]
    assert not core.users.administrators_exist()
    done = client.post("/setup", data={**form, "csrf_token": csrf_from(page.text)}, follow_redirects=False)
    assert done.status_code == 303 and core.users.administrators_exist()


def test_a_csrf_token_from_another_browser_is_refused(client: TestClient) -> None:
    """Double submit: the token must match this browser's own cookie, not any token the server ever issued."""
    attacker = TestClient(client.app, base_url=PUBLIC_URL)
    their_token = csrf_from(attacker.get("/sign-in").text)
    client.get("/sign-in")

    response = client.post("/sign-in", data={"csrf_token": their_token, "identifier": "x@example.com", "password": "y"})

    assert response.status_code == 403
    attacker.close()


def _hosted_sign_in_page(client: TestClient, client_id: str) -> tuple[str, str]:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": TENANT_CALLBACK, "scope": "openid email",
        "state": "st", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    start = client.get("/t/default/oidc/authorize", params=params, follow_redirects=False)
    page = client.get(urlsplit(start.headers["location"]).path)
    interaction = re.search(r'name="interaction" value="([^"]+)"', page.text)
    assert interaction, page.text
    return page.text, interaction.group(1)


@pytest.mark.parametrize("csrf_token", [None, "forged-value-000000000000"], ids=["missing", "forged"])
def test_hosted_sign_in_without_the_csrf_token_starts_no_session(
    client: TestClient, core: IdentityCore, user: str, csrf_token: str | None
) -> None:
    application = core.applications.create(
        DEFAULT_TENANT_ID, name="SPA", app_type="spa", actor=ACTOR, redirect_uris=[TENANT_CALLBACK]
    )
    _, interaction = _hosted_sign_in_page(client, application.id)
    form: dict[str, Any] = {"interaction": interaction, "identifier": USER_EMAIL, "password": USER_PASSWORD}
    if csrf_token:
        form["csrf_token"] = csrf_token

    response = client.post("/t/default/sign-in", data=form, follow_redirects=False)

    assert response.status_code == 403, response.text
    assert "location" not in response.headers
    assert "idp_session_default" not in client.cookies


def test_hosted_consent_without_the_csrf_token_issues_no_code(
    client: TestClient, core: IdentityCore, user: str
) -> None:
    partner = core.applications.create(
        DEFAULT_TENANT_ID, name="Partner", app_type="spa", actor=ACTOR, redirect_uris=[TENANT_CALLBACK],
        third_party=True,
    )  # fmt: skip
    page, interaction = _hosted_sign_in_page(client, partner.id)
    consent = client.post(
        "/t/default/sign-in",
        data={
            "csrf_token": csrf_from(page), "interaction": interaction, "identifier": USER_EMAIL,
            "password": USER_PASSWORD,
        },
        follow_redirects=False,
    )  # fmt: skip
    action = re.search(r'action="(/t/default/interaction/[^"]+/consent)"', consent.text)
    assert action, consent.text

    forged = client.post(action.group(1), data={"action": "approve"}, follow_redirects=False)

    assert forged.status_code == 403
    assert "location" not in forged.headers
    # The real form still works: the forged post changed nothing.
    done = client.post(
        action.group(1), data={"action": "approve", "csrf_token": csrf_from(consent.text)}, follow_redirects=False
    )
    assert done.status_code == 303 and "code=" in done.headers["location"]
