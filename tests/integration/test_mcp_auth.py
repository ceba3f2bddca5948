"""/mcp as an OAuth protected resource: the challenge, which tokens are refused, RFC 9728 metadata, and
DNS-rebinding protection. Spoken over HTTP as an MCP client would, through the whole app in process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anyio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.settings import Settings
from tests.support.databases import fresh_database_url
from tests.support.inprocess import PUBLIC_URL
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.mcp_http import McpSession
from tests.support.tokens import (
    IssuedToken,
    hmac_token,
    mint_token,
    obtain_access_token,
    tamper,
    token_claims,
    unsigned_token,
)

METADATA_URL = f"{PUBLIC_URL}/.well-known/oauth-protected-resource/mcp"
CHALLENGE_SCOPE = "idp:read idp:write offline_access"


@pytest.fixture
def issued(client: TestClient) -> IssuedToken:
    """A real token from the code flow: its user and client are the ones minted tokens speak for."""
    return obtain_access_token(client)


@dataclass(frozen=True)
class SharedApp:
    client: TestClient
    core: IdentityCore
    issued: IssuedToken


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedApp]:
    """One app for the many refused-token cases, which change nothing: the per-test fixtures cost an Argon2 hash
    and a sign-in each."""
    directory = tmp_path_factory.mktemp("mcp-auth")
    with fresh_database_url(directory) as database_url:
        settings = Settings(public_url=PUBLIC_URL, data_dir=directory, database_url=database_url)
        core = IdentityCore.from_settings(settings)
        core.bootstrap()
        anyio.run(core.users.create_administrator, ADMIN_EMAIL, ADMIN_PASSWORD)
        with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as client:
            yield SharedApp(client, core, obtain_access_token(client))
        core.close()


def assert_refused_as_invalid_token(client: TestClient, token: str) -> None:
    response = McpSession(client, token).initialize_response()
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    assert f'resource_metadata="{METADATA_URL}"' in challenge
    assert "mcp-session-id" not in response.headers


# --- the challenge --------------------------------------------------------------------------------------


def test_request_without_authorization_is_challenged_with_resource_metadata_and_scope(client: TestClient) -> None:
    response = McpSession(client, None).initialize_response()

    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert f'resource_metadata="{METADATA_URL}"' in challenge
    assert f'scope="{CHALLENGE_SCOPE}"' in challenge
    assert "mcp-session-id" not in response.headers


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_other_methods_without_authorization_are_challenged_too(client: TestClient, method: str) -> None:
    response = client.request(method, "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": "x"})

    assert response.status_code == 401
    assert f'resource_metadata="{METADATA_URL}"' in response.headers["www-authenticate"]


def test_non_bearer_authorization_is_challenged_like_no_authorization(client: TestClient) -> None:
    response = client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Accept": "application/json, text/event-stream", "Authorization": "Basic YWRhOnNlY3JldA=="},
    )

    assert response.status_code == 401
    assert f'resource_metadata="{METADATA_URL}"' in response.headers["www-authenticate"]


# --- tokens that must be refused ------------------------------------------------------------------------

TokenFactory = Callable[[IdentityCore, IssuedToken], str]


def _claims(issued: IssuedToken, **overrides: object) -> dict[str, object]:
    return token_claims(issued.user_id, issued.client_id, **overrides)


def _public_pem(core: IdentityCore) -> bytes:
    return core.keys.signing_key("admin").public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _past(seconds: int) -> int:
    return int(time.time()) - seconds


def _future(seconds: int) -> int:
    return int(time.time()) + seconds


REFUSED_TOKENS: dict[str, TokenFactory] = {
    "garbage": lambda core, issued: "this-is-not-a-jwt",
    "audience_of_another_resource": lambda core, issued: mint_token(
        core, _claims(issued, aud="https://other.example/mcp")
    ),
    "audience_of_the_authorization_server": lambda core, issued: mint_token(core, _claims(issued, aud=PUBLIC_URL)),
    "wrong_issuer": lambda core, issued: mint_token(core, _claims(issued, iss="https://evil.example")),
    "expired": lambda core, issued: mint_token(core, _claims(issued, iat=_past(600), nbf=_past(600), exp=_past(60))),
    "not_yet_valid": lambda core, issued: mint_token(core, _claims(issued, nbf=_future(600), exp=_future(900))),
    "signed_by_an_unknown_key_under_the_servers_kid": lambda core, issued: mint_token(
        core, _claims(issued), key=ec.generate_private_key(ec.SECP256R1())
    ),
    "alg_none": lambda core, issued: unsigned_token(core, _claims(issued)),
    "hs256_keyed_with_the_servers_public_key": lambda core, issued: hmac_token(
        core, _claims(issued), _public_pem(core)
    ),
    "unknown_kid": lambda core, issued: mint_token(core, _claims(issued), headers={"kid": "no-such-kid"}),
    "no_kid": lambda core, issued: mint_token(core, _claims(issued), headers={"kid": None}),
    "signed_with_the_default_tenants_key": lambda core, issued: mint_token(
        core, _claims(issued), signing_tenant="default"
    ),
    "tampered_payload": lambda core, issued: tamper(issued.access_token, sub="someone-else"),
    "typ_jwt_instead_of_at_jwt": lambda core, issued: mint_token(core, _claims(issued), headers={"typ": "JWT"}),
    "missing_gid": lambda core, issued: mint_token(core, _claims(issued, gid=None)),
    "missing_client_id": lambda core, issued: mint_token(core, _claims(issued, client_id=None)),
    "missing_exp": lambda core, issued: mint_token(core, _claims(issued, exp=None)),
    "missing_tenant": lambda core, issued: mint_token(core, _claims(issued, tenant=None)),
}


@pytest.mark.parametrize("factory", REFUSED_TOKENS.values(), ids=REFUSED_TOKENS.keys())
def test_token_is_refused_with_invalid_token(shared: SharedApp, factory: TokenFactory) -> None:
    assert_refused_as_invalid_token(shared.client, factory(shared.core, shared.issued))


def test_minted_token_with_every_claim_right_is_accepted(shared: SharedApp) -> None:
    """The control for the refusals above: each of them differs from this token in one respect only."""
    response = McpSession(shared.client, mint_token(shared.core, _claims(shared.issued))).initialize_response()

    assert response.status_code == 200, response.text
    assert response.headers["mcp-session-id"]


def test_token_of_a_revoked_grant_is_refused(client: TestClient, core: IdentityCore, issued: IssuedToken) -> None:
    # Revoked before the token's first use: the verifier caches a family's revocation status for a few seconds.
    core.grants.revoke_family("admin", issued.grant_id, reason="test", client_id=issued.client_id)

    assert_refused_as_invalid_token(client, issued.access_token)


def test_revoking_one_grant_leaves_the_other_grants_tokens_working(
    client: TestClient, core: IdentityCore, issued: IssuedToken
) -> None:
    other = obtain_access_token(client, client_name="Other agent")
    core.grants.revoke_family("admin", other.grant_id, reason="test", client_id=other.client_id)

    assert_refused_as_invalid_token(client, other.access_token)
    assert McpSession(client, issued.access_token).initialize_response().status_code == 200


def test_refresh_token_is_not_accepted_as_an_access_token(client: TestClient, issued: IssuedToken) -> None:
    assert issued.refresh_token
    assert_refused_as_invalid_token(client, issued.refresh_token)


# --- RFC 9728 protected resource metadata ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"])
def test_protected_resource_metadata_names_the_resource_and_its_authorization_server(
    client: TestClient, path: str
) -> None:
    response = client.get(path, headers={"Origin": "https://inspector.example"})

    assert response.status_code == 200
    document = response.json()
    assert document["resource"] == f"{PUBLIC_URL}/mcp"
    assert document["authorization_servers"] == [PUBLIC_URL]
    assert set(document["scopes_supported"]) >= {"idp:read", "idp:write"}
    assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"])
def test_protected_resource_metadata_answers_a_cors_preflight(client: TestClient, path: str) -> None:
    response = client.options(
        path,
        headers={
            "Origin": "https://inspector.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "MCP-Protocol-Version",
        },
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "mcp-protocol-version" in response.headers["access-control-allow-headers"].lower()


def test_challenge_points_at_metadata_that_is_served(client: TestClient) -> None:
    challenge = McpSession(client, None).initialize_response().headers["www-authenticate"]
    url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]

    response = client.get(url.removeprefix(PUBLIC_URL))

    assert response.status_code == 200
    assert response.json()["resource"] == f"{PUBLIC_URL}/mcp"


# --- DNS rebinding --------------------------------------------------------------------------------------


def test_foreign_origin_is_refused_even_with_a_valid_token(client: TestClient, issued: IssuedToken) -> None:
    response = McpSession(client, issued.access_token).initialize_response(headers={"Origin": "http://evil.example"})

    assert response.status_code == 403, response.text
    assert "mcp-session-id" not in response.headers


def test_foreign_host_is_refused_even_with_a_valid_token(client: TestClient, issued: IssuedToken) -> None:
    response = McpSession(client, issued.access_token).initialize_response(headers={"Host": "evil.example:8000"})

    assert response.status_code == 421, response.text
    assert "mcp-session-id" not in response.headers


def test_own_origin_is_accepted(client: TestClient, issued: IssuedToken) -> None:
    response = McpSession(client, issued.access_token).initialize_response(headers={"Origin": PUBLIC_URL})

    assert response.status_code == 200, response.text
    assert response.headers["mcp-session-id"]
