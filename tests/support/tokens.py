"""Access tokens for tests of the protected resource: real ones, obtained through the code flow, and minted ones
with chosen claims, headers and keys, for tokens that are well formed but must be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from starlette.testclient import TestClient

from idp_mcp.core.crypto import new_id
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from tests.support.inprocess import PUBLIC_URL, authorize, csrf_from, exchange_code, pkce_pair, register_client

MCP_RESOURCE = f"{PUBLIC_URL}/mcp"
TENANT_CALLBACK = "http://127.0.0.1:7777/callback"


def tenant_issuer(tenant_id: str = "default") -> str:
    return f"{PUBLIC_URL}/t/{tenant_id}/oidc"


@dataclass(frozen=True)
class IssuedToken:
    """A token pair from the real token endpoint, and the client it was issued to."""

    access_token: str
    refresh_token: str | None
    client_id: str
    client_name: str
    claims: dict[str, Any]
    id_token: str | None = None

    @property
    def user_id(self) -> str:
        return str(self.claims["sub"])

    @property
    def grant_id(self) -> str:
        return str(self.claims["gid"])


def obtain_access_token(
    client: TestClient,
    *,
    allow_write: bool = True,
    client_name: str = "Test agent",
    scope: str = "idp:read idp:write offline_access",
) -> IssuedToken:
    """Register a client, sign in and consent as the administrator, and exchange the code: a real token."""
    registered = register_client(client, client_name=client_name)
    result = authorize(client, registered["client_id"], allow_write=allow_write, scope=scope)
    response = exchange_code(client, registered["client_id"], result)
    assert response.status_code == 200, response.text
    body = response.json()
    return IssuedToken(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token"),
        client_id=registered["client_id"],
        client_name=registered["client_name"],
        claims=jwt.decode(body["access_token"], options={"verify_signature": False}),
        id_token=body.get("id_token"),
    )


def tenant_authorization_code(
    client: TestClient,
    client_id: str,
    *,
    identifier: str,
    password: str,
    tenant_id: str = "default",
    scope: str = "openid profile email offline_access",
    pkce: bool = True,
) -> tuple[str, str]:
    """Through a tenant's hosted sign-in page as ``identifier``: the authorization code and the PKCE verifier
    (with ``pkce=False`` no challenge is sent, which only confidential applications may do)."""
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": TENANT_CALLBACK, "scope": scope,
        "state": "st", "nonce": "n", "prompt": "login",
    }  # fmt: skip
    if pkce:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    start = client.get(f"/t/{tenant_id}/oidc/authorize", params=params, follow_redirects=False)
    assert start.status_code == 302, start.text
    page = client.get(urlsplit(start.headers["location"]).path)
    interaction = re.search(r'name="interaction" value="([^"]+)"', page.text)
    assert interaction, page.text
    done = client.post(
        f"/t/{tenant_id}/sign-in",
        data={
            "csrf_token": csrf_from(page.text), "interaction": interaction.group(1), "identifier": identifier,
            "password": password,
        },
        follow_redirects=False,
    )  # fmt: skip
    assert done.status_code == 303, done.text
    query = parse_qs(urlsplit(done.headers["location"]).query)
    assert query["iss"] == [tenant_issuer(tenant_id)]
    return query["code"][0], verifier


def obtain_tenant_token(
    client: TestClient,
    core: IdentityCore,
    *,
    identifier: str,
    password: str,
    tenant_id: str = "default",
    scope: str = "openid profile email offline_access",
    client_id: str | None = None,
) -> IssuedToken:
    """A real token from a tenant's issuer: a single-page application (made here unless ``client_id`` names one),
    the hosted sign-in page as ``identifier``, and the code exchanged with PKCE."""
    if client_id is None:
        application = core.applications.create(
            tenant_id, name=f"App {new_id(3)}", app_type="spa", actor=Actor(tenant_id, "test"),
            redirect_uris=[TENANT_CALLBACK],
        )  # fmt: skip
        client_id = application.id
    code, verifier = tenant_authorization_code(
        client, client_id, identifier=identifier, password=password, tenant_id=tenant_id, scope=scope
    )
    response = client.post(
        f"/t/{tenant_id}/oidc/token",
        data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": TENANT_CALLBACK,
            "code_verifier": verifier, "client_id": client_id,
        },
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    return IssuedToken(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token"),
        client_id=client_id,
        client_name="",
        claims=jwt.decode(body["access_token"], options={"verify_signature": False}),
        id_token=body.get("id_token"),
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


def tenant_token_claims(
    user_id: str, client_id: str, /, tenant_id: str = "default", **overrides: Any
) -> dict[str, Any]:
    """Claims of a token the tenant's userinfo endpoint would accept; an override of ``None`` drops that claim."""
    issuer = tenant_issuer(tenant_id)
    defaults: dict[str, Any] = {"iss": issuer, "aud": issuer, "scope": "openid email profile", "tenant": None}
    return token_claims(user_id, client_id, **{**defaults, **overrides})


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


def unsigned_token(
    core: IdentityCore, claims: dict[str, Any], *, signing_tenant: str = "admin", alg: str = "none"
) -> str:
    """``alg: none`` (or another spelling of it) with the tenant key's kid: no signature at all (built by hand)."""
    header = {"alg": alg, "typ": "at+jwt", "kid": core.keys.signing_key(signing_tenant).kid}
    return f"{_segment(header)}.{_segment(claims)}."


def hmac_token(core: IdentityCore, claims: dict[str, Any], secret: bytes, *, signing_tenant: str = "admin") -> str:
    """HS256 with the tenant key's kid and ``secret``: the key-confusion attack when the secret is the public key
    (built by hand, PyJWT refuses asymmetric keys as HMAC secrets)."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": core.keys.signing_key(signing_tenant).kid}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tamper(token: str, **changes: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{_segment({**claims, **changes})}.{signature}"


def tamper_header(token: str, **changes: Any) -> str:
    """The token with its JOSE header changed (a value of ``None`` drops it) and the original signature kept."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    changed = {name: value for name, value in {**decoded, **changes}.items() if value is not None}
    return f"{_segment(changed)}.{payload}.{signature}"


def public_pem(core: IdentityCore, tenant_id: str = "admin") -> bytes:
    """The tenant's published signing key as PEM (what an attacker has, from the JWKS)."""
    return core.keys.signing_key(tenant_id).public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_jwk_json(core: IdentityCore, tenant_id: str = "admin") -> bytes:
    """The tenant's published signing key as the JWKS serves it, serialised (another HMAC-confusion secret)."""
    return json.dumps(core.keys.signing_key(tenant_id).public_jwk, separators=(",", ":")).encode()
