"""The token endpoint: code exchange with PKCE, resource binding, refresh rotation and reuse detection, and
RFC 6749 errors for everything else."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.settings import Settings
from tests.support.clock import Clock
from tests.support.inprocess import (
    PUBLIC_URL,
    AuthorizationResult,
    authorize,
    exchange_code,
    pkce_pair,
    refresh,
    register_client,
)

MCP_RESOURCE = f"{PUBLIC_URL}/mcp"


def claims_of(access_token: str) -> dict[str, Any]:
    return dict(jwt.decode(access_token, options={"verify_signature": False}))


def assert_oauth_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == error


def tokens_for(client: TestClient, client_id: str, **authorize_args: Any) -> dict[str, Any]:
    """The token response of a complete, successful code flow."""
    response = exchange_code(client, client_id, authorize(client, client_id, **authorize_args))
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def client_id(client: TestClient) -> str:
    return str(register_client(client)["client_id"])


# --- code exchange -----------------------------------------------------------------------------------


def test_successful_exchange_is_not_cached_and_is_a_bearer_token(client: TestClient, client_id: str) -> None:
    response = exchange_code(client, client_id, authorize(client, client_id))

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] > 0
    assert token["scope"] == "idp:read idp:write offline_access"


def test_code_replay_is_refused_and_revokes_the_tokens_of_the_first_exchange(
    client: TestClient, client_id: str, core: IdentityCore
) -> None:
    result = authorize(client, client_id)
    first = exchange_code(client, client_id, result).json()

    replay = exchange_code(client, client_id, result)

    assert_oauth_error(replay, "invalid_grant")
    assert_oauth_error(refresh(client, client_id, first["refresh_token"]), "invalid_grant")
    assert core.grants.is_family_revoked(claims_of(first["access_token"])["gid"])


def test_wrong_code_verifier_is_refused_with_invalid_grant(client: TestClient, client_id: str) -> None:
    other_verifier, _ = pkce_pair()

    response = exchange_code(client, client_id, authorize(client, client_id), code_verifier=other_verifier)

    assert_oauth_error(response, "invalid_grant")


def test_missing_code_verifier_is_refused(client: TestClient, client_id: str) -> None:
    response = exchange_code(client, client_id, authorize(client, client_id), code_verifier=None)

    assert_oauth_error(response, "invalid_request")
    assert "access_token" not in response.json()


def test_redirect_uri_different_from_the_authorization_request_is_refused(client: TestClient, client_id: str) -> None:
    result = authorize(client, client_id, redirect_uri="http://127.0.0.1:4000/callback")

    response = exchange_code(client, client_id, result, redirect_uri="http://127.0.0.1:9999/callback")

    assert_oauth_error(response, "invalid_grant")


def test_code_issued_to_another_client_is_refused(client: TestClient, client_id: str) -> None:
    result = authorize(client, client_id)
    thief = register_client(client, client_name="Other agent")["client_id"]

    stolen = exchange_code(client, thief, result)

    assert_oauth_error(stolen, "invalid_grant")
    # The owner can still redeem its code: the failed attempt did not consume it.
    assert exchange_code(client, client_id, result).status_code == 200


def test_unknown_code_is_refused_with_invalid_grant(client: TestClient, client_id: str) -> None:
    result = authorize(client, client_id)

    response = exchange_code(client, client_id, AuthorizationResult(result.redirect, {"code": "forged"}, "v" * 43))

    assert_oauth_error(response, "invalid_grant")


def test_resource_different_from_the_code_is_refused_with_invalid_target(client: TestClient, client_id: str) -> None:
    response = exchange_code(client, client_id, authorize(client, client_id), resource="https://other.example/mcp")

    assert_oauth_error(response, "invalid_target")


def test_resource_equal_to_the_code_is_accepted(client: TestClient, client_id: str) -> None:
    result = authorize(client, client_id, extra={"resource": MCP_RESOURCE})

    response = exchange_code(client, client_id, result, resource=MCP_RESOURCE)

    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["aud"] == MCP_RESOURCE


def test_without_offline_access_no_refresh_token_is_issued(client: TestClient, client_id: str) -> None:
    token = tokens_for(client, client_id, scope="idp:read idp:write")

    assert "refresh_token" not in token
    assert token["scope"] == "idp:read idp:write"


def test_read_only_consent_gives_a_token_without_write_scope(client: TestClient, client_id: str) -> None:
    token = tokens_for(client, client_id, allow_write=False)

    assert "idp:write" not in token["scope"].split()
    assert "idp:read" in token["scope"].split()
    assert "idp:write" not in claims_of(token["access_token"])["scope"].split()


def test_client_registered_without_refresh_grant_gets_no_refresh_token(client: TestClient) -> None:
    client_id = register_client(client, grant_types=["authorization_code"])["client_id"]

    token = tokens_for(client, client_id)

    assert "refresh_token" not in token


# --- refresh -----------------------------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token_and_keeps_the_mcp_audience(client: TestClient, client_id: str) -> None:
    first = tokens_for(client, client_id)

    response = refresh(client, client_id, first["refresh_token"])

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert second["refresh_token"] and second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    claims = claims_of(second["access_token"])
    assert claims["aud"] == MCP_RESOURCE
    assert claims["gid"] == claims_of(first["access_token"])["gid"]
    assert second["scope"] == first["scope"]


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(client: TestClient, client_id: str) -> None:
    first = tokens_for(client, client_id)
    second = refresh(client, client_id, first["refresh_token"]).json()

    reuse = refresh(client, client_id, first["refresh_token"])

    assert_oauth_error(reuse, "invalid_grant")
    assert_oauth_error(refresh(client, client_id, second["refresh_token"]), "invalid_grant")


def test_refresh_with_a_narrower_scope_issues_a_narrower_access_token(client: TestClient, client_id: str) -> None:
    first = tokens_for(client, client_id)

    response = refresh(client, client_id, first["refresh_token"], scope="idp:read offline_access")

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "idp:read offline_access"
    assert claims_of(response.json()["access_token"])["scope"] == "idp:read offline_access"


def test_narrowing_at_refresh_keeps_the_original_scope_for_the_next_rotation(
    client: TestClient, client_id: str
) -> None:
    first = tokens_for(client, client_id)
    narrow = refresh(client, client_id, first["refresh_token"], scope="idp:read").json()

    assert narrow["scope"] == "idp:read"
    assert narrow.get("refresh_token"), "narrowing the access token must not end the grant"
    again = refresh(client, client_id, narrow["refresh_token"])

    assert again.status_code == 200, again.text
    assert again.json()["scope"] == first["scope"]


def test_refresh_with_a_wider_scope_is_refused_and_the_refresh_token_still_works(client: TestClient) -> None:
    client_id = register_client(client)["client_id"]
    first = tokens_for(client, client_id, allow_write=False)

    wider = refresh(client, client_id, first["refresh_token"], scope="idp:read idp:write offline_access")

    assert_oauth_error(wider, "invalid_scope")
    assert refresh(client, client_id, first["refresh_token"]).status_code == 200


def test_refresh_with_another_resource_is_refused_and_the_refresh_token_still_works(
    client: TestClient, client_id: str
) -> None:
    first = tokens_for(client, client_id)

    other = refresh(client, client_id, first["refresh_token"], resource="https://other.example/mcp")

    assert_oauth_error(other, "invalid_target")
    assert refresh(client, client_id, first["refresh_token"], resource=MCP_RESOURCE).status_code == 200


def test_refresh_token_of_another_client_is_refused(client: TestClient, client_id: str) -> None:
    first = tokens_for(client, client_id)
    other = register_client(client, client_name="Other agent")["client_id"]

    assert_oauth_error(refresh(client, other, first["refresh_token"]), "invalid_grant")
    assert refresh(client, client_id, first["refresh_token"]).status_code == 200


# --- expiry (a clock the test controls) ----------------------------------------------------------------


@pytest.fixture
def clocked_client(client: TestClient) -> TestClient:
    """The shared client: its core runs on the ``clock`` fixture."""
    return client


def test_expired_code_is_refused_with_invalid_grant(
    clocked_client: TestClient, clock: Clock, settings: Settings
) -> None:
    client_id = register_client(clocked_client)["client_id"]
    result = authorize(clocked_client, client_id)

    clock.advance(settings.authorization_code_ttl + 1)

    assert_oauth_error(exchange_code(clocked_client, client_id, result), "invalid_grant")


def test_expired_refresh_token_is_refused_with_invalid_grant(
    clocked_client: TestClient, clock: Clock, settings: Settings
) -> None:
    client_id = register_client(clocked_client)["client_id"]
    first = tokens_for(clocked_client, client_id)

    clock.advance(settings.refresh_token_ttl + 1)

    assert_oauth_error(refresh(clocked_client, client_id, first["refresh_token"]), "invalid_grant")


# --- malformed requests --------------------------------------------------------------------------------


@pytest.mark.parametrize("grant_type", ["password", "client_credentials", "implicit", "urn:x:custom"])
def test_unsupported_grant_type_is_refused(client: TestClient, client_id: str, grant_type: str) -> None:
    response = client.post("/oauth/token", data={"grant_type": grant_type, "client_id": client_id})

    assert_oauth_error(response, "unsupported_grant_type")


def test_json_body_instead_of_form_is_refused_with_invalid_request(client: TestClient, client_id: str) -> None:
    result = authorize(client, client_id)

    response = client.post(
        "/oauth/token",
        json={
            "grant_type": "authorization_code",
            "code": result.params["code"],
            "client_id": client_id,
            "redirect_uri": "http://127.0.0.1:9999/callback",
            "code_verifier": result.verifier,
        },
    )

    assert_oauth_error(response, "invalid_request")


GARBAGE_FORMS: list[dict[str, Any]] = [
    {},
    {"grant_type": ""},
    {"grant_type": "authorization_code"},
    {"grant_type": "authorization_code", "client_id": "nobody", "code": "x"},
    {"grant_type": "authorization_code", "client_id": "x" * 5000, "code": "x"},
    {"grant_type": "authorization_code", "client_id": "https://127.0.0.1/not-a-document", "code": "x"},
    {"grant_type": "authorization_code", "client_id": "{client_id}", "code": "x" * 5000, "code_verifier": "y"},
    {"grant_type": "authorization_code", "client_id": "{client_id}", "code": "\x00\ud7ff\u2028", "code_verifier": "é"},
    {"grant_type": "authorization_code", "client_id": "{client_id}", "code": "c", "redirect_uri": "::::"},
    {"grant_type": "authorization_code", "client_id": "{client_id}", "code": "c", "resource": ["a", "b"]},
    {"grant_type": ["authorization_code", "refresh_token"], "client_id": "{client_id}"},
    {"grant_type": "refresh_token", "client_id": "{client_id}"},
    {"grant_type": "refresh_token", "client_id": "{client_id}", "refresh_token": "z" * 10000},
    {"grant_type": "refresh_token", "client_id": "{client_id}", "refresh_token": "r", "scope": "\x01 \x02"},
    {"grant_type": "refresh_token", "client_id": ["{client_id}", "other"], "refresh_token": "r"},
]


@pytest.mark.parametrize("form", GARBAGE_FORMS, ids=[f"form{i}" for i in range(len(GARBAGE_FORMS))])
def test_garbage_parameters_get_an_oauth_error_never_a_server_error(
    client: TestClient, client_id: str, form: dict[str, Any]
) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value.replace("{client_id}", client_id)

    response = client.post("/oauth/token", data={key: fill(value) for key, value in form.items()})

    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"\xff\xfe=%%%&&=="),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"grant_type=" + b"a" * (70 * 1024)),
        ({"Content-Type": "text/plain"}, b"grant_type=authorization_code"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
        ({}, b""),
        (
            {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic !!!not-base64"},
            b"grant_type=authorization_code&code=x",
        ),
        (
            {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic Og=="},
            b"grant_type=authorization_code&code=x",
        ),
        (
            {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer abc"},
            b"grant_type=refresh_token&refresh_token=x",
        ),
    ],
    ids=["bad-bytes", "too-large", "text-plain", "multipart", "empty", "bad-basic", "empty-basic", "bearer"],
)
def test_malformed_bodies_and_credentials_get_an_oauth_error_never_a_server_error(
    client: TestClient, headers: dict[str, str], content: bytes
) -> None:
    response = client.post("/oauth/token", headers=headers, content=content)

    assert 400 <= response.status_code < 500, response.text
    assert isinstance(response.json()["error"], str)


# --- CORS ----------------------------------------------------------------------------------------------


def test_token_endpoint_answers_a_cors_preflight(client: TestClient) -> None:
    response = client.options(
        "/oauth/token",
        headers={
            "Origin": "http://localhost:6274",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:6274")
    assert "POST" in response.headers["access-control-allow-methods"]


def test_token_responses_carry_cors_headers_for_browser_clients(client: TestClient, client_id: str) -> None:
    result = authorize(client, client_id)
    form = {
        "grant_type": "authorization_code",
        "code": result.params["code"],
        "client_id": client_id,
        "redirect_uri": "http://127.0.0.1:9999/callback",
        "code_verifier": result.verifier,
    }

    response = client.post("/oauth/token", data=form, headers={"Origin": "http://localhost:6274"})

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
