"""/mcp's bearer gate (``BearerGate``, one ASGI callable) answers exactly as the MCP SDK's own stack would
(``AuthenticationMiddleware`` with ``BearerAuthBackend``, ``AuthContextMiddleware``, ``RequireAuthMiddleware``): the
same status, body and challenge for every kind of Authorization header and token, and the same authenticated user
passed on. The one deliberate difference: our challenge also names the scopes to ask for (RFC 6750 §3 ``scope``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend, RequireAuthMiddleware
from pydantic import AnyHttpUrl
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from idp_mcp.core.identity import IdentityCore
from idp_mcp.mcp_server.server import BearerGate
from idp_mcp.oauth.verifier import McpTokenVerifier
from tests.support.inprocess import PUBLIC_URL
from tests.support.tokens import IssuedToken, hmac_token, mint_token, obtain_access_token, tamper, token_claims

METADATA_URL = f"{PUBLIC_URL}/.well-known/oauth-protected-resource/mcp"
CHALLENGE_SCOPE = "idp:read idp:write offline_access"


async def echo_user(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected app: says who the gate let in (scope["user"], scope["auth"], the SDK's auth context)."""
    user = scope.get("user")
    context = get_access_token()
    body = json.dumps(
        {
            "user": user.access_token.client_id if isinstance(user, AuthenticatedUser) else None,
            "scopes": sorted(scope["auth"].scopes) if scope.get("auth") else None,
            "context": context.client_id if context else None,
        }
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def gates(core: IdentityCore, required: tuple[str, ...]) -> tuple[ASGIApp, ASGIApp]:
    verifier = McpTokenVerifier(
        core.keys, core.grants, tenant_id="admin", issuer=PUBLIC_URL, resource=f"{PUBLIC_URL}/mcp"
    )
    ours = BearerGate(
        echo_user, verifier, resource_metadata_url=METADATA_URL, scope=CHALLENGE_SCOPE, required_scopes=required
    )
    sdk = AuthenticationMiddleware(
        AuthContextMiddleware(RequireAuthMiddleware(echo_user, list(required), AnyHttpUrl(METADATA_URL))),
        backend=BearerAuthBackend(verifier),
    )
    return ours, sdk


def answer(app: ASGIApp, headers: list[tuple[str, str]]) -> tuple[int, Any, str | None]:
    response = TestClient(app, base_url=PUBLIC_URL).post("/mcp", headers=headers, content=b"{}")  # no lifespan
    return response.status_code, response.json(), response.headers.get("www-authenticate")


@pytest.fixture
def tokens(client: TestClient, core: IdentityCore) -> dict[str, str]:
    writer: IssuedToken = obtain_access_token(client)
    reader = obtain_access_token(client, allow_write=False, client_name="Reader")
    claims = token_claims(writer.user_id, writer.client_id)
    past = claims["iat"] - 600
    public_key = core.keys.signing_key("admin").public_key
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "writer": writer.access_token,
        "reader": reader.access_token,
        "expired": mint_token(core, {**claims, "iat": past, "nbf": past, "exp": past + 300}),
        "other_audience": mint_token(core, {**claims, "aud": f"{PUBLIC_URL}/t/default/oidc"}),
        "tampered": tamper(writer.access_token, scope="idp:read idp:write admin"),
        "hmac": hmac_token(core, claims, pem),
        "garbage": "not-a-token",
    }


CASES: list[tuple[str, list[tuple[str, str]]]] = [
    ("no header", []),
    ("basic", [("authorization", "Basic dXNlcjpwYXNz")]),
    ("empty bearer", [("authorization", "Bearer ")]),
    ("bearer without a space", [("authorization", "Bearer{writer}")]),
    ("lower-case scheme", [("authorization", "bearer {writer}")]),
    ("upper-case scheme", [("authorization", "BEARER {writer}")]),
    ("valid", [("authorization", "Bearer {writer}")]),
    ("read-only", [("authorization", "Bearer {reader}")]),
    ("expired", [("authorization", "Bearer {expired}")]),
    ("other audience", [("authorization", "Bearer {other_audience}")]),
    ("tampered", [("authorization", "Bearer {tampered}")]),
    ("hmac", [("authorization", "Bearer {hmac}")]),
    ("garbage", [("authorization", "Bearer {garbage}")]),
    ("two headers, basic first", [("authorization", "Basic dXNlcjpwYXNz"), ("authorization", "Bearer {writer}")]),
    ("two headers, bearer first", [("authorization", "Bearer {writer}"), ("authorization", "Basic dXNlcjpwYXNz")]),
]


@pytest.mark.parametrize("required", [(), ("idp:write",)], ids=["no scope required", "idp:write required"])
def test_the_gate_answers_as_the_sdks_middleware_does(
    core: IdentityCore, tokens: dict[str, str], required: tuple[str, ...]
) -> None:
    ours, sdk = gates(core, required)
    for name, template in CASES:
        headers = [(key, value.format(**tokens)) for key, value in template]
        expected_status, expected_body, expected_challenge = answer(sdk, headers)
        status, body, challenge = answer(ours, headers)
        assert (status, body) == (expected_status, expected_body), name
        if expected_challenge is None:
            assert challenge is None, name
        else:
            assert challenge == f'{expected_challenge}, scope="{CHALLENGE_SCOPE}"', name
    # The cases above reach every outcome, so agreeing is not agreeing on one answer.
    outcomes = {
        answer(sdk, [("authorization", f"Bearer {tokens[kind]}")])[0] for kind in ("writer", "reader", "expired")
    }
    assert outcomes == ({200, 401} if not required else {200, 401, 403})
