"""The authorization endpoint: redirect URI matching, PKCE, resource and scope checks, errors reported safely."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from tests.support.inprocess import (
    PUBLIC_URL,
    REDIRECT_URI,
    authorization_params,
    authorize,
    exchange_code,
    register_client,
    start_authorization,
)

HOSTED_CALLBACKS = [
    "https://claude.ai/api/mcp/auth_callback",
    "https://vscode.dev/redirect",
    "https://chatgpt.com/connector_platform_oauth_redirect",
]
CURSOR_CALLBACK = "cursor://anysphere.cursor-mcp/oauth/callback"


def assert_error_page(response: httpx.Response, error: str | None = None) -> None:
    """An HTML page for the user, never a redirect: the redirect URI cannot be trusted."""
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    if error:
        assert error in response.text


def is_interaction_redirect(response: httpx.Response) -> bool:
    location = response.headers.get("location", "")
    return response.status_code == 302 and urlsplit(location).path.startswith("/interaction/")


# --- redirect URIs --------------------------------------------------------------------------------------


def test_unregistered_redirect_uri_shows_an_error_page_and_never_redirects(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(
        client, authorization_params(client_id, redirect_uri="https://attacker.example/callback")
    )

    assert_error_page(response)
    assert "attacker.example" not in response.headers.get("location", "")


def test_missing_redirect_uri_shows_an_error_page(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(client, authorization_params(client_id, redirect_uri=None))

    assert_error_page(response)


def test_loopback_redirect_uri_with_another_port_is_accepted_and_completes_the_flow(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]
    other_port = "http://127.0.0.1:51234/callback"

    result = authorize(client, client_id, redirect_uri=other_port)

    assert result.redirect.startswith(f"{other_port}?")
    assert result.params["code"]
    response = exchange_code(client, client_id, result, redirect_uri=other_port)
    assert response.status_code == 200, response.text


def test_loopback_redirect_uri_without_a_port_is_accepted(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(client, authorization_params(client_id, redirect_uri="http://127.0.0.1/callback"))

    assert is_interaction_redirect(response)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:9999/other",
        "http://127.0.0.1:9999/Callback",
        "http://127.0.0.1:9999/callback/",
        "http://127.0.0.1:9999/callback?extra=1",
        "http://127.0.0.1:9999/callback#fragment",
        "http://localhost:9999/callback",
        "https://127.0.0.1:9999/callback",
    ],
    ids=["path", "path-case", "trailing-slash", "extra-query", "fragment", "other-loopback-host", "https"],
)
def test_loopback_redirect_uri_differing_in_more_than_the_port_is_refused(
    client: TestClient, redirect_uri: str
) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(client, authorization_params(client_id, redirect_uri=redirect_uri))

    assert_error_page(response)


def test_unknown_client_id_shows_an_error_page(client: TestClient) -> None:
    response = start_authorization(client, authorization_params("no-such-client"))

    assert_error_page(response, "invalid_client")


# --- errors reported to the client -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
    ],
    ids=["no-challenge", "plain", "no-method"],
)
def test_pkce_without_s256_is_refused_with_invalid_request_on_a_page(
    client: TestClient, overrides: dict[str, str | None]
) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(client, authorization_params(client_id, **overrides))

    # A self-registered client's redirect URI is not proven (RFC 9700 §4.11.2): the error is shown here.
    assert_error_page(response, "invalid_request")


def test_repeated_code_challenge_is_refused_with_invalid_request(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]
    pairs = [*authorization_params(client_id).items(), ("code_challenge", "B" * 43)]

    response = client.get(f"/oauth/authorize?{urlencode(pairs)}", follow_redirects=False)

    # A self-registered client's redirect URI is not proven (RFC 9700 §4.11.2): the error is shown here.
    assert_error_page(response, "invalid_request")


def test_unknown_resource_is_refused_with_invalid_target(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(client, authorization_params(client_id, resource="https://other.example/mcp"))

    # A self-registered client's redirect URI is not proven (RFC 9700 §4.11.2): the error is shown here.
    assert_error_page(response, "invalid_target")


def test_the_mcp_resource_named_explicitly_is_accepted(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(client, authorization_params(client_id, resource=f"{PUBLIC_URL}/mcp"))

    assert is_interaction_redirect(response)


def test_unknown_scope_is_refused_with_invalid_scope(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(client, authorization_params(client_id, scope="idp:read idp:superuser"))

    # A self-registered client's redirect URI is not proven (RFC 9700 §4.11.2): the error is shown here.
    assert_error_page(response, "invalid_scope")


def test_unsupported_response_type_is_refused_on_a_page(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(client, authorization_params(client_id, response_type="token"))

    # A self-registered client's redirect URI is not proven (RFC 9700 §4.11.2): the error is shown here.
    assert_error_page(response, "unsupported_response_type")


def test_denying_consent_redirects_with_access_denied_state_and_iss(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]

    result = authorize(client, client_id, action="deny")

    assert result.redirect.startswith(f"{REDIRECT_URI}?")
    assert result.params["error"] == "access_denied"
    assert result.params["state"] == "state-123"
    assert result.params["iss"] == PUBLIC_URL
    assert "code" not in result.params


def test_a_valid_request_is_sent_to_the_interaction_page_and_not_cached(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]

    response = start_authorization(client, authorization_params(client_id))

    assert is_interaction_redirect(response)
    assert response.headers["cache-control"] == "no-store"


# --- real MCP clients' redirect URIs ------------------------------------------------------------------


def test_private_use_scheme_public_client_completes_the_flow(client: TestClient) -> None:
    client_id = register_client(client, client_name="Cursor", redirect_uris=[CURSOR_CALLBACK])["client_id"]

    result = authorize(client, client_id, redirect_uri=CURSOR_CALLBACK)

    assert result.redirect.startswith(f"{CURSOR_CALLBACK}?")
    assert result.params["iss"] == PUBLIC_URL
    response = exchange_code(client, client_id, result, redirect_uri=CURSOR_CALLBACK)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("callback", HOSTED_CALLBACKS)
def test_hosted_client_callback_registers_and_completes_the_flow(client: TestClient, callback: str) -> None:
    client_id = register_client(client, redirect_uris=[callback])["client_id"]

    result = authorize(client, client_id, redirect_uri=callback)

    assert result.redirect.startswith(f"{callback}?")
    assert result.params["state"] == "state-123"
    response = exchange_code(client, client_id, result, redirect_uri=callback)
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


# --- no CORS -----------------------------------------------------------------------------------------


def test_authorize_endpoint_sends_no_cors_headers(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]
    origin = {"Origin": "http://localhost:6274"}

    response = start_authorization(client, authorization_params(client_id), headers=origin)
    preflight = client.options("/oauth/authorize", headers={**origin, "Access-Control-Request-Method": "GET"})

    assert is_interaction_redirect(response)
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    assert not [name for name in preflight.headers if name.lower().startswith("access-control-")]
