"""Access tokens: RFC 9068 JWTs signed with the tenant's ES256 key."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import jwt

from idp_mcp.core.crypto import new_id
from idp_mcp.core.keys import KeyRing
from idp_mcp.core.permissions import ResourceAccess
from idp_mcp.domain import Clock, User


@dataclass(frozen=True)
class TokenSubject:
    """Everything a token is about, carried from the code or refresh token to the token generator."""

    user_id: str
    family_id: str
    resource: str | None
    acting_tenant_id: str | None
    auth_time: datetime | None
    nonce: str | None = None
    # The scope of the grant itself when the access token asks for less (a narrower refresh, RFC 6749 §6).
    grant_scope: str | None = None
    # The user's record when it was read with the code or refresh token (for the ID token's claims).
    user: User | None = field(default=None, compare=False, repr=False)
    # A tenant issuer's token for one of its API resources (RFC 8707): ``aud`` is that resource (``resource`` stays
    # what the grant was authorized for) and ``api`` what the subject holds on it now.
    audience: str | None = None
    api: ResourceAccess | None = field(default=None, compare=False, repr=False)
    # How the user signed in (RFC 8176) and the acr, carried from the code to its refresh tokens.
    amr: tuple[str, ...] = ()
    acr: str | None = None

    def get_user_id(self) -> str:  # authlib asks users for this
        return self.user_id


class AccessTokenIssuer:
    def __init__(self, keys: KeyRing, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    def issue(
        self,
        *,
        signing_tenant_id: str,
        issuer: str,
        subject: TokenSubject,
        client_id: str,
        scope: str,
        ttl_seconds: int,
    ) -> str:
        key = self._keys.signing_key(signing_tenant_id, "ES256")
        now = int(self._clock().timestamp())
        claims: dict[str, object] = {
            "iss": issuer,
            "sub": subject.user_id,
            "aud": subject.audience if subject.audience is not None else subject.resource,
            "client_id": client_id,
            "scope": scope,
            "jti": new_id(16),
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            # The grant (token family) this token descends from, so revoking the grant stops its tokens.
            "gid": subject.family_id,
        }
        if subject.acting_tenant_id:
            claims["tenant"] = subject.acting_tenant_id
        if subject.auth_time:
            claims["auth_time"] = int(subject.auth_time.timestamp())
        return jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid, "typ": "at+jwt"})  # type: ignore[arg-type]
