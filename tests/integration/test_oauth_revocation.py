"""Token revocation (RFC 7009): revoking either token of a grant ends the grant."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from tests.support.inprocess import authorize, exchange_code, refresh, register_client


@pytest.fixture
def client_id(client: TestClient) -> str:
    return str(register_client(client)["client_id"])


def tokens_for(client: TestClient, client_id: str) -> dict[str, Any]:
    response = exchange_code(client, client_id, authorize(client, client_id))
    assert response.status_code == 200, response.text
    return dict(response.json())


def revoke(client: TestClient, form: dict[str, str], auth: tuple[str, str] | None = None) -> Any:
    return client.post("/oauth/revoke", data=form, auth=auth)


def family_of(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["gid"])


def test_revoking_a_refresh_token_answers_200_and_the_token_stops_working(
    client: TestClient, client_id: str, core: IdentityCore
) -> None:
    tokens = tokens_for(client, client_id)

    response = revoke(client, {"token": tokens["refresh_token"], "client_id": client_id})

    assert response.status_code == 200, response.text
    refused = refresh(client, client_id, tokens["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert core.grants.is_family_revoked(family_of(tokens["access_token"]))


def test_revoking_with_a_refresh_token_hint_works(client: TestClient, client_id: str) -> None:
    tokens = tokens_for(client, client_id)

    response = revoke(
        client, {"token": tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": client_id}
    )

    assert response.status_code == 200, response.text
    assert refresh(client, client_id, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_an_access_token_ends_its_grant_and_refresh_token(
    client: TestClient, client_id: str, core: IdentityCore
) -> None:
    tokens = tokens_for(client, client_id)

    response = revoke(
        client, {"token": tokens["access_token"], "token_type_hint": "access_token", "client_id": client_id}
    )

    assert response.status_code == 200, response.text
    assert core.grants.is_family_revoked(family_of(tokens["access_token"]))
    assert refresh(client, client_id, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_one_grant_leaves_the_clients_other_grants_alone(client: TestClient, client_id: str) -> None:
    first = tokens_for(client, client_id)
    second = tokens_for(client, client_id)

    revoke(client, {"token": first["refresh_token"], "client_id": client_id})

    assert refresh(client, client_id, second["refresh_token"]).status_code == 200


@pytest.mark.parametrize("token", ["unknown-token", "x" * 5000, "eyJhbGciOiJub25lIn0.e30."])
def test_revoking_an_unknown_token_answers_200(client: TestClient, client_id: str, token: str) -> None:
    response = revoke(client, {"token": token, "client_id": client_id})

    assert response.status_code == 200, response.text


def test_missing_token_parameter_is_refused_with_invalid_request(client: TestClient, client_id: str) -> None:
    response = revoke(client, {"client_id": client_id})

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("hint", ["id_token", "access_token"])
def test_an_unknown_or_wrong_token_type_hint_is_ignored(client: TestClient, client_id: str, hint: str) -> None:
    tokens = tokens_for(client, client_id)

    response = revoke(client, {"token": tokens["refresh_token"], "token_type_hint": hint, "client_id": client_id})

    assert response.status_code == 200, response.text
    assert refresh(client, client_id, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revocation_without_client_identification_is_refused_with_invalid_client(
    client: TestClient, client_id: str
) -> None:
    tokens = tokens_for(client, client_id)

    response = revoke(client, {"token": tokens["refresh_token"]})

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert refresh(client, client_id, tokens["refresh_token"]).status_code == 200


def test_a_client_cannot_revoke_another_clients_token(client: TestClient, client_id: str) -> None:
    tokens = tokens_for(client, client_id)
    other = register_client(client, client_name="Other agent")["client_id"]

    response = revoke(client, {"token": tokens["refresh_token"], "client_id": other})

    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)
    assert refresh(client, client_id, tokens["refresh_token"]).status_code == 200


def test_confidential_client_revokes_with_http_basic_and_not_with_a_wrong_secret(client: TestClient) -> None:
    registered = register_client(client, token_endpoint_auth_method="client_secret_basic")
    client_id, secret = registered["client_id"], registered["client_secret"]
    result = authorize(client, client_id)
    tokens = exchange_code(client, client_id, result, auth=(client_id, secret)).json()

    wrong = revoke(client, {"token": tokens["refresh_token"]}, auth=(client_id, "wrong-secret"))
    right = revoke(client, {"token": tokens["refresh_token"]}, auth=(client_id, secret))

    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert right.status_code == 200, right.text
    refused = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client_id, secret),
    )
    assert refused.json()["error"] == "invalid_grant"


def test_revocation_endpoint_answers_a_cors_preflight(client: TestClient) -> None:
    response = client.options(
        "/oauth/revoke",
        headers={"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST"},
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:6274")


def test_json_body_at_revocation_is_refused_with_invalid_request(client: TestClient, client_id: str) -> None:
    response = client.post("/oauth/revoke", json={"token": "x", "client_id": client_id})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
