"""Access tokens for tests of the protected resource: real ones, obtained through the code flow, and minted ones
with chosen claims, headers and keys, for tokens that are well formed but must be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.testclient import TestClient

from idp_mcp.core.crypto import new_id
from idp_mcp.core.identity import IdentityCore
from tests.support.inprocess import PUBLIC_URL, authorize, exchange_code, register_client

MCP_RESOURCE = f"{PUBLIC_URL}/mcp"


@dataclass(frozen=True)
class IssuedToken:
    """A token pair from the real token endpoint, and the client it was issued to."""

    access_token: str
    refresh_token: str | None
    client_id: str
    client_name: str
    claims: dict[str, Any]

    @property
    def user_id(self) -> str:
        return str(self.claims["sub"])

    @property
    def grant_id(self) -> str:
        return str(self.claims["gid"])


def obtain_access_token(
    client: TestClient, *, allow_write: bool = True, client_name: str = "Test agent"
) -> IssuedToken:
    """Register a client, sign in and consent as the administrator, and exchange the code: a real token."""
    registered = register_client(client, client_name=client_name)
    result = authorize(client, registered["client_id"], allow_write=allow_write)
    response = exchange_code(client, registered["client_id"], result)
    assert response.status_code == 200, response.text
    body = response.json()
    return IssuedToken(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token"),
        client_id=registered["client_id"],
        client_name=registered["client_name"],
        claims=jwt.decode(body["access_token"], options={"verify_signature": False}),
    )


def token_claims(user_id: str, client_id: str, /, **overrides: Any) -> dict[str, Any]:
    """Claims of a token the MCP endpoint would accept; an override of ``None`` drops that claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": PUBLIC_URL,
        "sub": user_id,
        "aud": MCP_RESOURCE,
        "client_id": client_id,
        "scope": "idp:read idp:write",
        "jti": new_id(16),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "gid": new_id(16),
        "tenant": "default",
        **overrides,
    }
    return {name: value for name, value in claims.items() if value is not None}


def mint_token(
    core: IdentityCore,
    claims: dict[str, Any],
    *,
    signing_tenant: str = "admin",
    key: Any = None,
    algorithm: str = "ES256",
    headers: dict[str, Any] | None = None,
) -> str:
    """Sign ``claims`` as the server would (the ``signing_tenant``'s key, kid, typ at+jwt), or with ``key``.

    ``headers`` override the JOSE header; a header value of ``None`` drops it.
    """
    server_key = core.keys.signing_key(signing_tenant)
    header: dict[str, Any] = {"kid": server_key.kid, "typ": "at+jwt", **(headers or {})}
    header = {name: value for name, value in header.items() if value is not None}
    signing_key: Any = key if key is not None else server_key.private_key
    return jwt.encode(claims, signing_key, algorithm=algorithm, headers=header)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def unsigned_token(core: IdentityCore, claims: dict[str, Any]) -> str:
    """``alg: none`` with the admin key's kid: no signature at all (built by hand)."""
    header = {"alg": "none", "typ": "at+jwt", "kid": core.keys.signing_key("admin").kid}
    return f"{_segment(header)}.{_segment(claims)}."


def hmac_token(core: IdentityCore, claims: dict[str, Any], secret: bytes) -> str:
    """HS256 with the admin key's kid and ``secret``: the key-confusion attack when the secret is the public key
    (built by hand, PyJWT refuses asymmetric keys as HMAC secrets)."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": core.keys.signing_key("admin").kid}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tamper(token: str, **changes: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{_segment({**claims, **changes})}.{signature}"
