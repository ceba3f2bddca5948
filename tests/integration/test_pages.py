"""The pages: CSRF on every form, session cookies, sign-out, safe return paths, and the tenant choice."""

from __future__ import annotations

from urllib.parse import urlsplit

import jwt
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import ADMIN_TENANT_ID, Actor
from idp_mcp.settings import Settings
from idp_mcp.web.pages import safe_next
from idp_mcp.web.session import CookieJar
from tests.support.inprocess import (
    REDIRECT_URI,
    authorize,
    csrf_from,
    exchange_code,
    pkce_pair,
    register_client,
    sign_in,
)
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD


def _start_interaction(client: TestClient) -> str:
    registered = register_client(client)
    _, challenge = pkce_pair()
    response = client.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": registered["client_id"],
            "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "s",
        },
        follow_redirects=False,
    )
    return urlsplit(response.headers["location"]).path


def test_sign_in_without_the_csrf_token_is_refused_and_starts_no_session(client: TestClient) -> None:
    client.get("/sign-in")  # sets the CSRF cookie
    response = client.post(
        "/sign-in", data={"identifier": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": "forged-value-000000000"}
    )
    assert response.status_code == 403
    assert "session.csrf_failed" in response.text
    assert "idp_session" not in client.cookies


def test_consent_without_the_csrf_token_issues_no_code(client: TestClient) -> None:
    interaction = _start_interaction(client)
    assert sign_in(client, interaction).status_code == 303
    response = client.post(f"{interaction}/consent", data={"action": "approve"}, follow_redirects=False)
    assert response.status_code == 403
    # The interaction is still pending: a real submit from the page works afterwards.
    page = client.get(interaction)
    done = client.post(
        f"{interaction}/consent", data={"action": "approve", "csrf_token": csrf_from(page.text)}, follow_redirects=False
    )
    assert done.status_code == 303 and "code=" in done.headers["location"]


def test_sign_out_needs_csrf_and_ends_the_session_on_the_server(client: TestClient) -> None:
    assert sign_in(client).status_code == 303
    raw = client.cookies["idp_session"]
    assert client.post("/sign-out", data={"next": "/"}).status_code == 403

    home = client.get("/")
    response = client.post("/sign-out", data={"csrf_token": csrf_from(home.text), "next": "/"}, follow_redirects=False)
    assert response.status_code == 303

    # The old cookie value is worthless now, even if someone kept a copy.
    client.cookies.set("idp_session", raw)
    assert "Signed in as" not in client.get("/").text


def test_setup_page_is_closed_once_an_administrator_exists(client: TestClient) -> None:
    page = client.get("/setup", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/sign-in")
    sign_in_page = client.get("/sign-in")
    response = client.post(
        "/setup",
        data={
            "csrf_token": csrf_from(sign_in_page.text),
            "email": "mallory@example.com",
            "password": "a long passphrase",
            "password_confirm": "a long passphrase",
        },
    )
    assert response.status_code == 409
    assert "exists already" in response.text


def test_session_cookie_is_http_only_and_same_site_lax(client: TestClient) -> None:
    response = sign_in(client)
    cookie = next(
        value for name, value in response.headers.multi_items() if name == "set-cookie" and "idp_session" in value
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback


def test_on_https_cookies_are_secure_and_host_prefixed() -> None:
    jar = CookieJar(Settings(public_url="https://id.example.com"))
    assert jar.secure
    assert jar.session_name == "__Host-idp_session" and jar.csrf_name == "__Host-idp_csrf"


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("/interaction/abc", "/interaction/abc"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        (None, "/"),
    ],
)
def test_return_paths_after_sign_in_stay_on_this_site(candidate: str | None, expected: str) -> None:
    assert safe_next(candidate) == expected


def test_pages_cannot_be_framed(client: TestClient) -> None:
    response = client.get("/sign-in")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_an_administrator_of_two_tenants_chooses_which_one_the_agent_acts_on(
    client: TestClient, core: IdentityCore
) -> None:
    admin = core.users.find_administrator(ADMIN_EMAIL)
    assert admin is not None
    core.tenants.create("acme", "Acme Corp", owner_user_id=admin.id, actor=Actor(ADMIN_TENANT_ID, admin.id))
    registered = register_client(client)

    result = authorize(client, registered["client_id"], extra={}, tenant="acme")
    token = exchange_code(client, registered["client_id"], result).json()

    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["tenant"] == "acme"


def test_consent_page_lists_every_tenant_of_the_administrator(client: TestClient, core: IdentityCore) -> None:
    admin = core.users.find_administrator(ADMIN_EMAIL)
    assert admin is not None
    core.tenants.create("acme", "Acme Corp", owner_user_id=admin.id, actor=Actor(ADMIN_TENANT_ID, admin.id))
    interaction = _start_interaction(client)
    sign_in(client, interaction)
    page = client.get(interaction).text
    assert 'type="radio" name="tenant" value="default"' in page
    assert 'type="radio" name="tenant" value="acme"' in page
    assert "Acme Corp" in page


def test_a_forged_tenant_choice_is_refused(client: TestClient) -> None:
    interaction = _start_interaction(client)
    sign_in(client, interaction)
    page = client.get(interaction)
    response = client.post(
        f"{interaction}/consent",
        data={"action": "approve", "csrf_token": csrf_from(page.text), "tenant": "someone-elses"},
        follow_redirects=False,
    )
    assert response.status_code == 200
    assert "Choose a tenant you administer" in response.text
