"""In-process helpers: the ASGI app under Starlette's TestClient, and the browser steps done by hand with
real HTTP requests (sign-in form, consent form, CSRF cookie), so OAuth endpoints can be tested without
Chromium."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.testclient import TestClient

from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD

PUBLIC_URL = "http://127.0.0.1:8000"
REDIRECT_URI = "http://127.0.0.1:9999/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register_client(client: TestClient, **overrides: Any) -> dict[str, Any]:
    body = {
        "client_name": "Test agent",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **overrides,
    }
    response = client.post("/oauth/register", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client: TestClient, next_url: str = "/", email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> Any:
    page = client.get(f"/sign-in?next={next_url}")
    return client.post(
        "/sign-in",
        data={"csrf_token": csrf_from(page.text), "identifier": email, "password": password, "next": next_url},
        follow_redirects=False,
    )


@dataclass
class AuthorizationResult:
    redirect: str
    params: dict[str, str]
    verifier: str


def authorize(
    client: TestClient,
    client_id: str,
    *,
    scope: str = "idp:read idp:write offline_access",
    redirect_uri: str = REDIRECT_URI,
    action: str = "approve",
    allow_write: bool = True,
    extra: dict[str, str] | None = None,
    tenant: str | None = None,
) -> AuthorizationResult:
    """The whole browser part: /authorize → sign in → consent → the redirect back to the client."""
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "state-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **(extra or {}),
    }
    response = client.get(f"/oauth/authorize?{urlencode(params)}", follow_redirects=False)
    assert response.status_code == 302, response.text
    interaction = urlsplit(response.headers["location"]).path
    page = client.get(interaction)
    if 'name="identifier"' in page.text:
        signed_in = sign_in(client, interaction)
        assert signed_in.status_code == 303, signed_in.text
        page = client.get(interaction)
    assert 'value="approve"' in page.text, page.text
    form: dict[str, Any] = {"csrf_token": csrf_from(page.text), "action": action}
    if allow_write:
        form["scope"] = "idp:write"
    if tenant:
        form["tenant"] = tenant
    done = client.post(f"{interaction}/consent", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    location = done.headers["location"]
    query = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    return AuthorizationResult(redirect=location, params=query, verifier=verifier)


def exchange_code(
    client: TestClient,
    client_id: str,
    result: AuthorizationResult,
    *,
    auth: tuple[str, str] | None = None,
    **overrides: str | None,
) -> Any:
    """POST the code to /oauth/token. An override of None drops that parameter. With ``auth`` the client
    authenticates with HTTP Basic, which carries its client_id, so the form leaves client_id out."""
    form = {
        "grant_type": "authorization_code",
        "code": result.params["code"],
        "redirect_uri": REDIRECT_URI,
        "client_id": None if auth else client_id,
        "code_verifier": result.verifier,
        **overrides,
    }
    return client.post("/oauth/token", data={k: v for k, v in form.items() if v is not None}, auth=auth)


def refresh(client: TestClient, client_id: str, refresh_token: str, **overrides: str | None) -> Any:
    """POST a refresh_token grant to /oauth/token. An override of None drops that parameter."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **overrides}
    return client.post("/oauth/token", data={k: v for k, v in form.items() if v is not None})


def authorization_params(client_id: str, **overrides: str | None) -> dict[str, str]:
    """A valid authorization request for ``client_id``; an override of None drops that parameter."""
    _verifier, challenge = pkce_pair()
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "idp:read idp:write offline_access",
        "state": "state-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    return {key: value for key, value in params.items() if value is not None}


def start_authorization(client: TestClient, params: dict[str, str], headers: dict[str, str] | None = None) -> Any:
    """GET /oauth/authorize without following the redirect (to the interaction page or back to the client)."""
    return client.get(f"/oauth/authorize?{urlencode(params)}", headers=headers, follow_redirects=False)


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect Location, first value of each."""
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
