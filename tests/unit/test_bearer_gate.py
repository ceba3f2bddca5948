"""The bearer check in front of /mcp answers as the MCP SDK's bearer middleware does: 401 with the RFC 6750
challenge (resource_metadata and scope), 403 insufficient_scope, and the authenticated user in the request."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from idp_mcp.mcp_server.server import BearerGate

METADATA = "https://idp.example/.well-known/oauth-protected-resource/mcp"
SCOPE = "idp:read idp:write offline_access"
GOOD = "good-token"


class KnownTokens:
    """A verifier that knows one token (the real one is tested in tests/integration/test_mcp_auth.py)."""

    def __init__(self, expires_at: int | None = None, scopes: list[str] | None = None) -> None:
        self.token = AccessToken(
            token=GOOD, client_id="agent", scopes=scopes or ["idp:read"], expires_at=expires_at, subject="human"
        )
        self.seen: list[str] = []

    async def verify_token(self, token: str) -> AccessToken | None:
        self.seen.append(token)
        return self.token if token == GOOD else None


def call(gate_verifier: KnownTokens, authorization: bytes | None, required: tuple[str, ...] = ()) -> dict[str, Any]:
    reached: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached["user"] = scope["user"]
        reached["scopes"] = scope["auth"].scopes
        reached["context_token"] = get_access_token()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gate = BearerGate(
        app,
        gate_verifier,  # type: ignore[arg-type]
        resource_metadata_url=METADATA,
        scope=SCOPE,
        required_scopes=required,
    )
    sent: list[dict[str, Any]] = []
    headers = [(b"host", b"idp.example")] + ([(b"authorization", authorization)] if authorization else [])

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def run() -> None:
        with anyio.fail_after(5):
            await gate({"type": "http", "method": "POST", "path": "/mcp", "headers": headers}, receive, send)

    anyio.run(run)
    start = sent[0]
    return {
        "status": start["status"],
        "headers": {name.decode(): value.decode() for name, value in start["headers"]},
        "body": sent[1]["body"],
        "reached": reached,
    }


@pytest.mark.parametrize(
    "authorization", [None, b"Basic YWRhOnNlY3JldA==", b"Bearer wrong-token", b"Bearer", b"Bearer  good-token"]
)
def test_without_a_valid_bearer_token_the_answer_is_the_sdks_401_challenge_with_scope(
    authorization: bytes | None,
) -> None:
    answer = call(KnownTokens(), authorization)

    assert answer["status"] == 401
    assert answer["headers"]["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="Authentication required", '
        f'resource_metadata="{METADATA}", scope="{SCOPE}"'
    )
    assert answer["headers"]["content-type"] == "application/json"
    assert json.loads(answer["body"]) == {"error": "invalid_token", "error_description": "Authentication required"}
    assert answer["reached"] == {}


@pytest.mark.parametrize("prefix", [b"Bearer ", b"bearer ", b"BEARER "])
def test_a_valid_token_reaches_the_transport_as_the_authenticated_user(prefix: bytes) -> None:
    verifier = KnownTokens()
    answer = call(verifier, prefix + GOOD.encode())

    assert answer["status"] == 200
    user = answer["reached"]["user"]
    assert isinstance(user, AuthenticatedUser)  # the SDK binds sessions to this principal
    assert user.access_token is verifier.token
    assert answer["reached"]["scopes"] == ["idp:read"]
    assert answer["reached"]["context_token"] is verifier.token
    assert get_access_token() is None  # and the context variable is reset afterwards


def test_a_token_past_its_expiry_is_refused_even_if_the_verifier_accepted_it() -> None:
    answer = call(KnownTokens(expires_at=int(time.time()) - 10), b"Bearer " + GOOD.encode())

    assert answer["status"] == 401


def test_a_token_without_a_required_scope_gets_403_insufficient_scope() -> None:
    answer = call(KnownTokens(scopes=["idp:read"]), b"Bearer " + GOOD.encode(), required=("idp:write",))

    assert answer["status"] == 403
    challenge = answer["headers"]["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_scope", error_description="Required scope: idp:write"')
    assert f'resource_metadata="{METADATA}"' in challenge
    assert answer["reached"] == {}
