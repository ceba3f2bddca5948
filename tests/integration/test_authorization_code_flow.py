"""The authorization code flow through the real endpoints and pages, in process."""

from __future__ import annotations

import jwt
from starlette.testclient import TestClient

from tests.support.inprocess import PUBLIC_URL, authorize, exchange_code, register_client


def test_code_exchange_issues_an_es256_access_token_for_the_mcp_resource(client: TestClient) -> None:
    registered = register_client(client)
    result = authorize(client, registered["client_id"])
    assert result.params["state"] == "state-123"
    assert result.params["iss"] == PUBLIC_URL

    response = exchange_code(client, registered["client_id"], result)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token = response.json()
    header = jwt.get_unverified_header(token["access_token"])
    assert header["alg"] == "ES256" and header["typ"] == "at+jwt" and header["kid"]
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["aud"] == f"{PUBLIC_URL}/mcp"
    assert claims["iss"] == PUBLIC_URL
    assert claims["client_id"] == registered["client_id"]
    assert claims["tenant"] == "default"
    assert claims["scope"] == "idp:read idp:write offline_access"
    assert token["refresh_token"]


def test_openid_scope_adds_an_id_token_with_nonce_auth_time_and_at_hash(client: TestClient) -> None:
    registered = register_client(client)
    result = authorize(client, registered["client_id"], scope="openid email idp:read", extra={"nonce": "n-0S6"})
    token = exchange_code(client, registered["client_id"], result).json()

    jwks = client.get("/oauth/jwks").json()
    header = jwt.get_unverified_header(token["id_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        token["id_token"],
        jwt.PyJWK(key).key,
        algorithms=["ES256"],
        audience=registered["client_id"],
        issuer=PUBLIC_URL,
    )
    assert claims["nonce"] == "n-0S6"
    assert claims["email"] == "ada@example.com"
    assert isinstance(claims["auth_time"], int) and claims["at_hash"]
