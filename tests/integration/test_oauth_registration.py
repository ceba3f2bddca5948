"""Dynamic client registration (RFC 7591): public and confidential clients, and refused metadata."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.support.inprocess import REDIRECT_URI, authorize, exchange_code, register_client


def post_registration(client: TestClient, body: dict[str, Any]) -> httpx.Response:
    return client.post("/oauth/register", json=body)


def assert_registration_error(response: httpx.Response, error: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert "client_id" not in body


def valid_metadata(**overrides: Any) -> dict[str, Any]:
    return {
        "client_name": "Test agent",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **overrides,
    }


# --- public and confidential clients --------------------------------------------------------------------


def test_public_client_registration_returns_201_with_an_id_and_no_secret(client: TestClient) -> None:
    before = int(time.time())

    response = post_registration(client, valid_metadata())

    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["client_id"]
    assert before - 5 <= body["client_id_issued_at"] <= int(time.time()) + 5
    assert "client_secret" not in body
    assert body["token_endpoint_auth_method"] == "none"
    assert body["redirect_uris"] == [REDIRECT_URI]
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["client_name"] == "Test agent"


def test_each_registration_gets_a_new_client_id(client: TestClient) -> None:
    first = register_client(client)["client_id"]
    second = register_client(client)["client_id"]

    assert first != second


def test_omitted_auth_method_defaults_to_client_secret_basic_with_a_secret(client: TestClient) -> None:
    metadata = valid_metadata()
    del metadata["token_endpoint_auth_method"]

    response = post_registration(client, metadata)

    assert response.status_code == 201, response.text
    assert response.json()["token_endpoint_auth_method"] == "client_secret_basic"
    assert response.json()["client_secret"]


def test_confidential_client_gets_a_secret_and_completes_the_flow_with_http_basic(client: TestClient) -> None:
    registered = register_client(client, token_endpoint_auth_method="client_secret_basic")
    client_id, secret = registered["client_id"], registered["client_secret"]
    assert secret
    assert registered["client_secret_expires_at"] == 0

    result = authorize(client, client_id)
    response = exchange_code(client, client_id, result, auth=(client_id, secret))

    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_confidential_client_with_a_wrong_secret_is_refused_with_invalid_client(client: TestClient) -> None:
    registered = register_client(client, token_endpoint_auth_method="client_secret_basic")
    client_id = registered["client_id"]
    result = authorize(client, client_id)

    response = exchange_code(client, client_id, result, auth=(client_id, "not-the-secret"))

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()


def test_confidential_client_without_credentials_is_refused_with_invalid_client(client: TestClient) -> None:
    client_id = register_client(client, token_endpoint_auth_method="client_secret_basic")["client_id"]
    result = authorize(client, client_id)

    response = exchange_code(client, client_id, result)

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_client_secret_post_client_authenticates_in_the_form(client: TestClient) -> None:
    registered = register_client(client, token_endpoint_auth_method="client_secret_post")
    client_id = registered["client_id"]
    result = authorize(client, client_id)

    response = exchange_code(client, client_id, result, client_secret=registered["client_secret"])

    assert response.status_code == 200, response.text


def test_client_secret_basic_client_cannot_switch_to_client_secret_post(client: TestClient) -> None:
    registered = register_client(client, token_endpoint_auth_method="client_secret_basic")
    client_id = registered["client_id"]
    result = authorize(client, client_id)

    response = exchange_code(client, client_id, result, client_secret=registered["client_secret"])

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


# --- refused metadata --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b'["a", "list"]', "application/json"),
        (b'"a string"', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[" * 60000, "application/json"),
        (b'{"redirect_uris": ["http://127.0.0.1:9999/cb"]}', "application/x-www-form-urlencoded"),
        (b'{"redirect_uris": ["http://127.0.0.1:9999/cb"]}', "text/plain"),
    ],
    ids=["broken", "empty", "array", "string", "bad-bytes", "deeply-nested", "form-type", "text-type"],
)
def test_body_that_is_not_a_json_object_is_refused_with_invalid_client_metadata(
    client: TestClient, content: bytes, content_type: str
) -> None:
    response = client.post("/oauth/register", content=content, headers={"Content-Type": content_type})

    assert_registration_error(response, "invalid_client_metadata")


@pytest.mark.parametrize(
    "metadata",
    [
        {"redirect_uris": None},
        {"redirect_uris": []},
        {"redirect_uris": "http://127.0.0.1:9999/callback"},
        {"redirect_uris": [""]},
        {"redirect_uris": ["http://app.example.com/callback"]},
        {"redirect_uris": ["javascript:alert(1)"]},
        {"redirect_uris": ["data:text/html,hi"]},
        {"redirect_uris": ["https://app.example.com/callback#fragment"]},
        {"redirect_uris": ["/relative/callback"]},
        {"redirect_uris": ["https://app.example.com/*"]},
        {"redirect_uris": ["https://user@app.example.com/callback"]},
        {"redirect_uris": [f"http://127.0.0.1:{n}/cb" for n in range(1000, 1021)]},
        {
            "redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
    ],
    ids=[
        "missing",
        "empty",
        "not-a-list",
        "empty-string",
        "http-non-loopback",
        "javascript",
        "data",
        "fragment",
        "relative",
        "wildcard",
        "userinfo",
        "too-many",
        "private-use-confidential",
    ],
)
def test_bad_redirect_uris_are_refused_with_invalid_redirect_uri(client: TestClient, metadata: dict[str, Any]) -> None:
    body = {key: value for key, value in valid_metadata(**metadata).items() if value is not None}

    response = post_registration(client, body)

    assert_registration_error(response, "invalid_redirect_uri")


@pytest.mark.parametrize(
    "metadata",
    [
        {"grant_types": ["client_credentials"]},
        {"grant_types": ["authorization_code", "password"]},
        {"grant_types": []},
        {"response_types": ["token"]},
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"scope": "idp:read idp:root"},
        {"client_uri": "javascript:alert(1)"},
        {"logo_uri": "http://tracker.example/logo.png"},
        {"client_name": "x" * 201},
        {"client_name": ["not", "a", "string"]},
    ],
    ids=[
        "client-credentials",
        "password-grant",
        "no-grant",
        "implicit",
        "auth-method",
        "unknown-scope",
        "client-uri",
        "logo-uri-http",
        "name-too-long",
        "name-not-a-string",
    ],
)
def test_unsupported_metadata_is_refused_with_invalid_client_metadata(
    client: TestClient, metadata: dict[str, Any]
) -> None:
    response = post_registration(client, valid_metadata(**metadata))

    assert_registration_error(response, "invalid_client_metadata")


def test_unknown_metadata_members_are_ignored(client: TestClient) -> None:
    response = post_registration(client, valid_metadata(jwks_uri="https://app.example.com/jwks", x_custom=1))

    assert response.status_code == 201, response.text
    assert "x_custom" not in response.json()


def test_loopback_and_private_use_redirect_uris_register_for_a_public_client(client: TestClient) -> None:
    uris = [
        "http://127.0.0.1:9999/callback",
        "http://localhost/callback",
        "http://[::1]:3000/callback",
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "https://claude.ai/api/mcp/auth_callback",
    ]

    registered = register_client(client, redirect_uris=uris)

    assert registered["redirect_uris"] == uris


# --- CORS ----------------------------------------------------------------------------------------------


def test_registration_endpoint_answers_a_cors_preflight_and_tags_responses(client: TestClient) -> None:
    origin = {"Origin": "http://localhost:6274"}

    preflight = client.options(
        "/oauth/register",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
    )
    response = client.post("/oauth/register", json=valid_metadata(), headers=origin)

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "http://localhost:6274")
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == "*"
