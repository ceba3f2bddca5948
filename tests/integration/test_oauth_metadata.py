"""Discovery: RFC 8414 / OpenID Connect metadata and the JWKS the access tokens are verified with."""

from __future__ import annotations

import jwt
import pytest
from starlette.testclient import TestClient

from tests.support.inprocess import PUBLIC_URL, authorize, exchange_code, register_client

METADATA_PATHS = ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]


@pytest.mark.parametrize("path", METADATA_PATHS)
def test_metadata_names_the_issuer_exactly_without_a_trailing_slash(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.json()["issuer"] == "http://127.0.0.1:8000"


@pytest.mark.parametrize("path", METADATA_PATHS)
def test_metadata_advertises_what_mcp_clients_need(client: TestClient, path: str) -> None:
    metadata = client.get(path).json()

    assert metadata["authorization_endpoint"] == f"{PUBLIC_URL}/oauth/authorize"
    assert metadata["token_endpoint"] == f"{PUBLIC_URL}/oauth/token"
    assert metadata["registration_endpoint"] == f"{PUBLIC_URL}/oauth/register"
    assert metadata["revocation_endpoint"] == f"{PUBLIC_URL}/oauth/revoke"
    assert metadata["jwks_uri"] == f"{PUBLIC_URL}/oauth/jwks"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "none" in metadata["token_endpoint_auth_methods_supported"]
    assert {"idp:read", "idp:write", "offline_access"} <= set(metadata["scopes_supported"])
    assert metadata["response_types_supported"] == ["code"]
    assert set(metadata["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert metadata["client_id_metadata_document_supported"] is True
    assert metadata["authorization_response_iss_parameter_supported"] is True


def test_both_discovery_documents_are_identical(client: TestClient) -> None:
    oauth, openid = (client.get(path).json() for path in METADATA_PATHS)

    assert oauth == openid


def test_metadata_is_readable_cross_origin_by_browser_clients(client: TestClient) -> None:
    response = client.get(METADATA_PATHS[0], headers={"Origin": "http://localhost:6274"})

    assert response.headers["access-control-allow-origin"] == "*"


def test_jwks_publishes_a_p256_es256_public_key_without_private_members(client: TestClient) -> None:
    jwks_uri = client.get(METADATA_PATHS[0]).json()["jwks_uri"]

    response = client.get(jwks_uri.removeprefix(PUBLIC_URL))

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys, "the JWKS is empty"
    for key in keys:
        assert key["kty"] == "EC"
        assert key["crv"] == "P-256"
        assert key["alg"] == "ES256"
        assert key["kid"]
        assert key["x"] and key["y"]
        assert "d" not in key
        assert not {"p", "q", "dp", "dq", "qi", "k"} & set(key)


def test_access_tokens_verify_with_the_published_key_of_their_kid(client: TestClient) -> None:
    registered = register_client(client)
    result = authorize(client, registered["client_id"])
    access_token = exchange_code(client, registered["client_id"], result).json()["access_token"]
    keys = {key["kid"]: key for key in client.get("/oauth/jwks").json()["keys"]}

    kid = jwt.get_unverified_header(access_token)["kid"]
    public_key = jwt.PyJWK.from_dict(keys[kid]).key
    claims = jwt.decode(access_token, public_key, algorithms=["ES256"], audience=f"{PUBLIC_URL}/mcp")

    assert claims["iss"] == PUBLIC_URL
