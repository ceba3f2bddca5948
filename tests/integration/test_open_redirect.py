"""The authorization endpoint is not an open redirector (RFC 9700 §4.11.2), and ``prompt=none`` is answered.

Anyone may register a client (DCR) with any https redirect URI. Its errors are shown on a page of ours instead
of being sent to that URI, on the MCP issuer and on a tenant issuer, until the request passed every check; a
``prompt=none`` answer goes back only to a client an administrator approved. Applications (registered by an
administrator) get their errors by redirect as RFC 6749 §4.1.2.1 asks.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.clients import parse_client_metadata
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from tests.support.inprocess import (
    PUBLIC_URL,
    REDIRECT_URI,
    authorization_params,
    authorize,
    query_of,
    register_client,
    sign_in,
    start_authorization,
)

EVIL = "https://evil.example/cb"
TENANT_AUTHORIZE = "/t/default/oidc/authorize"

# Each request is refused before the sign-in page; from a self-registered client none may reach EVIL.
INVALID = {
    "implicit response type": {"response_type": "token"},
    "id_token response type": {"response_type": "id_token"},
    "no response type": {"response_type": None},
    "unknown scope": {"scope": "idp:read nonsense"},
    "no PKCE": {"code_challenge": None, "code_challenge_method": None},
    "plain PKCE": {"code_challenge_method": "plain"},
    "foreign resource": {"resource": "https://other.example/api"},
    "none with login": {"prompt": "none login", "scope": "openid idp:read"},
}


def _error_page_without_redirect(response: Any, where: str) -> None:
    status, headers, text = response.status_code, response.headers, response.text
    assert status == 400, (where, status, headers.get("location"))
    assert "location" not in headers, (where, headers["location"])
    assert headers["content-type"].startswith("text/html"), where
    assert "evil.example" not in text, where


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_requests_of_a_registered_client_show_a_page_on_the_mcp_issuer(client: TestClient, case: str) -> None:
    evil = register_client(client, redirect_uris=[EVIL])
    params = authorization_params(evil["client_id"], redirect_uri=EVIL, **INVALID[case])
    _error_page_without_redirect(start_authorization(client, params), case)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_requests_of_a_registered_client_show_a_page_on_a_tenant_issuer(
    client: TestClient, core: IdentityCore, case: str
) -> None:
    # Tenants take no open registration; a self-registered client there (origin "dcr") is held to the same rule.
    metadata = parse_client_metadata({"redirect_uris": [EVIL], "token_endpoint_auth_method": "none"})
    evil = core.clients.register("default", metadata)
    overrides = {**INVALID[case]}
    if case != "unknown scope" and "scope" not in overrides:
        overrides["scope"] = "openid"
    if case == "unknown scope":
        overrides["scope"] = "openid nonsense"
    if case == "foreign resource":
        overrides["resource"] = "https://other.example/api"
    params = authorization_params(evil.client.client_id, redirect_uri=EVIL, **overrides)
    response = client.get(f"{TENANT_AUTHORIZE}?{urlencode(params)}", follow_redirects=False)
    _error_page_without_redirect(response, case)


def test_prompt_none_from_a_client_nobody_approved_shows_a_page(client: TestClient) -> None:
    evil = register_client(client, redirect_uris=[EVIL])
    params = authorization_params(evil["client_id"], redirect_uri=EVIL, prompt="none")
    _error_page_without_redirect(start_authorization(client, params), "signed out")
    assert sign_in(client).status_code == 303
    response = start_authorization(client, params)
    _error_page_without_redirect(response, "signed in")
    assert 'value="approve"' not in response.text  # never the consent page


def test_prompt_none_answers_login_required_to_an_approved_client(client: TestClient) -> None:
    agent = register_client(client)
    authorize(client, agent["client_id"])  # an administrator approved it once
    client.cookies.clear()  # a browser without a session
    response = start_authorization(client, authorization_params(agent["client_id"], prompt="none"))
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI)
    query = query_of(location)
    assert query["error"] == "login_required" and query["state"] == "state-123" and query["iss"] == PUBLIC_URL


def test_prompt_none_with_a_session_answers_consent_required_instead_of_showing_consent(client: TestClient) -> None:
    agent = register_client(client)
    authorize(client, agent["client_id"])  # signed in, and approved once
    for scope in ("idp:read", "openid idp:read"):  # authlib's OpenID path and ours answer alike
        response = start_authorization(client, authorization_params(agent["client_id"], prompt="none", scope=scope))
        assert response.status_code == 302, response.text
        query = query_of(response.headers["location"])
        assert response.headers["location"].startswith(REDIRECT_URI)
        assert query["error"] == "consent_required" and query["iss"] == PUBLIC_URL, query


def test_an_application_registered_by_an_administrator_gets_its_errors_by_redirect(
    client: TestClient, core: IdentityCore
) -> None:
    app = core.applications.create(
        "default", name="Web", app_type="spa", actor=Actor("default", "admin"), redirect_uris=[EVIL]
    )
    params = authorization_params(app.id, redirect_uri=EVIL, response_type="token", scope="openid")
    response = client.get(f"{TENANT_AUTHORIZE}?{urlencode(params)}", follow_redirects=False)
    assert response.status_code == 302 and response.headers["location"].startswith(EVIL)
    assert query_of(response.headers["location"])["error"] == "unsupported_response_type"
    silent_params = authorization_params(app.id, redirect_uri=EVIL, scope="openid", prompt="none")
    silent = client.get(f"{TENANT_AUTHORIZE}?{urlencode(silent_params)}", follow_redirects=False)
    assert silent.status_code == 302 and query_of(silent.headers["location"])["error"] == "login_required"


def test_a_valid_request_from_a_registered_client_still_reaches_the_sign_in_page(client: TestClient) -> None:
    evil = register_client(client, redirect_uris=[EVIL])
    response = start_authorization(client, authorization_params(evil["client_id"], redirect_uri=EVIL))
    assert response.status_code == 302 and response.headers["location"].startswith(f"{PUBLIC_URL}/interaction/")
