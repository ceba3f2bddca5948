"""Access-token validation: signature with a published key of the right tenant, algorithm pinned to the key
(never ``none``, never HMAC), ``typ`` at+jwt, issuer, audience, expiry, and the grant not revoked.

The audience must be exactly the resource, as a single string. RFC 9068 §4 only asks that ``aud`` *contain* the
resource, but this server never issues a token for several audiences (RFC 8707 binds each to one resource), so a
list is either forged or meant for someone else as well; refusing it costs nothing and closes cross-resource replay.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import jwt

from idp_mcp.core.grants import Grants
from idp_mcp.core.keys import SUPPORTED_ALGS, KeyRing, SigningKey
from idp_mcp.domain import split_scope
from idp_mcp.store.transaction_tally import apart

if TYPE_CHECKING:
    # Not at run time: importing any of ``mcp`` imports the whole SDK (~0.5 s), and the authorization server
    # imports this module for decode_signed. McpTokenVerifier only runs once the MCP app has loaded the SDK.
    from mcp.server.auth.provider import AccessToken

REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "gid"]
LEEWAY_SECONDS = 5
MAX_TOKEN_LENGTH = 8192

#: Whether the token's subject may still act: (sub, client_id, acting tenant) → None when not at all, else the granted
#: scopes they may no longer use there (empty: all of them; e.g. idp:write for a read-only member). Runs in a thread.
SubjectCheck = Callable[[str, str, str], frozenset[str] | None]


def _header(token: str, typ: str) -> tuple[str, str] | None:
    """``(kid, alg)`` of a token whose header names a key, a supported ``alg`` (so never ``none``, never HMAC) and
    the ``typ`` expected; None otherwise."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return None
    kid, alg = header.get("kid"), header.get("alg")
    if not isinstance(kid, str) or alg not in SUPPORTED_ALGS or header.get("typ") != typ:
        return None
    return kid, str(alg)


def _signing_key(keys: KeyRing, token: str, tenant_id: str, typ: str) -> SigningKey | None:
    """The published key of ``tenant_id`` named by the token's header, if the header's ``alg`` is that key's
    own algorithm and its ``typ`` is the one expected. May read the database (an unknown kid): not on the loop."""
    header = _header(token, typ)
    if header is None:
        return None
    kid, alg = header
    key = keys.verification_key(kid, tenant_id=tenant_id)
    return key if key is not None and key.tenant_id == tenant_id and key.alg == alg else None


def _decode(token: str, key: SigningKey, **kwargs: Any) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = jwt.decode(token, key.public_key, algorithms=[key.alg], **kwargs)  # type: ignore[arg-type]
    except jwt.PyJWTError:
        return None
    return claims


def _decode_access_token(
    token: str, key: SigningKey, *, issuer: str, audience: str | None, verify_exp: bool
) -> dict[str, Any] | None:
    return _decode(
        token,
        key,
        issuer=issuer,
        audience=audience,
        leeway=LEEWAY_SECONDS,
        options={
            "require": REQUIRED_CLAIMS,
            "verify_aud": audience is not None,
            "strict_aud": audience is not None,
            "verify_exp": verify_exp,
        },
    )


def decode_signed(
    keys: KeyRing,
    token: str,
    *,
    tenant_id: str,
    issuer: str,
    audience: str | None = None,
    verify_exp: bool = True,
) -> dict[str, Any] | None:
    """The claims of a valid access token signed by ``tenant_id``'s key for ``issuer``; None otherwise."""
    key = _signing_key(keys, token, tenant_id, "at+jwt")
    if key is None:
        return None
    return _decode_access_token(token, key, issuer=issuer, audience=audience, verify_exp=verify_exp)


def decode_id_token(keys: KeyRing, token: str, tenant_id: str, issuer: str) -> dict[str, Any] | None:
    """Claims of an ID token this issuer signed, expired or not (an id_token_hint may be old), else None."""
    key = _signing_key(keys, token, tenant_id, "JWT")
    if key is None:
        return None
    return _decode(
        token, key, issuer=issuer, options={"verify_aud": False, "verify_exp": False, "require": ["iss", "sub", "aud"]}
    )


class McpTokenVerifier:
    """The MCP SDK's TokenVerifier: validates in process, no HTTP round trip.

    Verified tokens are cached by digest until they expire; the grant-revocation check and the subject check (the
    administrator still exists, is not suspended, still administers the tenant, and the client still exists) are
    cached for a few seconds only, so a revocation or a suspension takes effect on every replica within that window.
    """

    def __init__(
        self,
        keys: KeyRing,
        grants: Grants,
        *,
        tenant_id: str,
        issuer: str,
        resource: str,
        revocation_cache_seconds: float = 5.0,
        cache_size: int = 4096,
        subject_active: SubjectCheck | None = None,
    ) -> None:
        self._keys = keys
        self._grants = grants
        self._tenant_id = tenant_id
        self._issuer = issuer
        self._resource = resource
        self._revocation_ttl = revocation_cache_seconds
        self._cache_size = cache_size
        # digest → (kid, claims): the kid is looked up again on every use, so a retired key's tokens stop.
        self._verified: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._revocation_checked: dict[str, tuple[float, bool]] = {}
        self._subject_active = subject_active
        self._subject_checked: dict[tuple[str, str, str], tuple[float, frozenset[str] | None]] = {}
        self._lock = threading.Lock()

    async def verify_token(self, token: str) -> AccessToken | None:
        from mcp.server.auth.provider import AccessToken

        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            cached = self._verified.get(key)
        if cached is not None:
            kid, claims = cached
            if await self._verification_key(kid) is None:  # retired since it was verified
                with self._lock:
                    self._verified.pop(key, None)
                return None
        else:
            header = _header(token, "at+jwt")
            if header is None:
                return None
            kid, alg = header
            signing_key = await self._verification_key(kid)
            if signing_key is None or signing_key.alg != alg:
                return None
            decoded = _decode_access_token(
                token, signing_key, issuer=self._issuer, audience=self._resource, verify_exp=True
            )
            if decoded is None or not isinstance(decoded.get("tenant"), str):
                return None
            claims = decoded
            with self._lock:
                self._verified[key] = (kid, claims)
                while len(self._verified) > self._cache_size:
                    self._verified.popitem(last=False)
        if int(claims["exp"]) < time.time():
            return None
        if await self._is_revoked(str(claims["gid"])):
            return None
        withheld = await self._is_active(str(claims["sub"]), str(claims["client_id"]), str(claims["tenant"]))
        if withheld is None:
            return None
        return AccessToken(
            token=token,
            client_id=str(claims["client_id"]),
            scopes=[scope for scope in split_scope(str(claims["scope"])) if scope not in withheld],
            expires_at=int(claims["exp"]),
            resource=self._resource,
            subject=str(claims["sub"]),
            claims=claims,
        )

    async def _verification_key(self, kid: str) -> SigningKey | None:
        """The tenant's key for ``kid``: from memory when it answers, else (a load, or a reload for an unknown
        kid) in a worker thread, never a database read on the event loop."""
        answered, signing_key = self._keys.cached_verification_key(kid, tenant_id=self._tenant_id)
        if answered:
            return signing_key
        with apart("the bearer check"):
            return await anyio.to_thread.run_sync(partial(self._keys.verification_key, kid, tenant_id=self._tenant_id))

    async def _is_revoked(self, family_id: str) -> bool:
        now = time.monotonic()
        cached = self._revocation_checked.get(family_id)
        if cached is not None and now - cached[0] < self._revocation_ttl:
            return cached[1]
        with apart("the bearer check"):
            revoked = await anyio.to_thread.run_sync(self._grants.is_family_revoked, family_id)
        if len(self._revocation_checked) > self._cache_size:
            self._revocation_checked.clear()
        self._revocation_checked[family_id] = (now, revoked)
        return revoked

    async def _is_active(self, sub: str, client_id: str, tenant: str) -> frozenset[str] | None:
        check = self._subject_active
        if check is None:
            return frozenset()
        key = (sub, client_id, tenant)
        now = time.monotonic()
        cached = self._subject_checked.get(key)
        if cached is not None and now - cached[0] < self._revocation_ttl:
            return cached[1]
        with apart("the bearer check"):
            active = await anyio.to_thread.run_sync(check, sub, client_id, tenant)
        if len(self._subject_checked) > self._cache_size:
            self._subject_checked.clear()
        self._subject_checked[key] = (now, active)
        return active
