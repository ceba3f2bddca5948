"""Signing keys: generated on first use, persisted, published in JWKS, cached in memory.

The cache refreshes on a short interval and on an unknown ``kid`` (rate-limited), so a rotation done by one
replica is seen by the others without a restart.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.exc import IntegrityError

from idp_mcp.domain import Clock
from idp_mcp.store.db import Database
from idp_mcp.store.repos import keys as repo

SUPPORTED_ALGS = ("ES256", "RS256")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    tenant_id: str
    alg: str
    private_key: PrivateKeyTypes
    public_key: PublicKeyTypes
    public_jwk: dict[str, Any]
    jose_key: ECKey | RSAKey  # the same private key for joserfc (authlib's OpenID Connect signs with it)


def _generate(alg: str) -> PrivateKeyTypes:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported signing algorithm {alg}")


def _public_jwk(private_key: PrivateKeyTypes, alg: str) -> dict[str, Any]:
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = ECKey.import_key(public_pem) if alg == "ES256" else RSAKey.import_key(public_pem)
    data: dict[str, Any] = dict(jwk.as_dict(private=False))
    # RFC 7638 thumbprint as kid: stable, and unique without coordination between replicas.
    data["kid"] = jwk.thumbprint()
    data["alg"] = alg
    data["use"] = "sig"
    return data


class KeyRing:
    def __init__(self, db: Database, clock: Clock, refresh_seconds: float = 60.0) -> None:
        self._db = db
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._by_kid: dict[str, SigningKey] = {}
        self._signing: dict[tuple[str, str], SigningKey] = {}
        self._loaded_at = 0.0
        self._last_miss_reload = 0.0

    def ensure(self, tenant_id: str, alg: str = "ES256") -> SigningKey:
        """The key that signs for ``tenant_id`` with ``alg``; generated and stored on first use."""
        self._maybe_reload()
        key = self._signing.get((tenant_id, alg))
        if key is not None:
            return key
        private_key = _generate(alg)
        jwk = _public_jwk(private_key, alg)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        try:
            with self._db.transaction() as conn:
                if not any(row.alg == alg for row in repo.active_keys(conn, tenant_id)):
                    repo.insert_key(
                        conn,
                        {
                            "kid": jwk["kid"],
                            "tenant_id": tenant_id,
                            "alg": alg,
                            "private_pem": pem,
                            "public_jwk": jwk,
                            "created_at": self._clock(),
                        },
                    )
        except IntegrityError:
            pass  # another replica stored one first; load it below
        self._reload()
        return self._signing[(tenant_id, alg)]

    def signing_key(self, tenant_id: str, alg: str = "ES256") -> SigningKey:
        self._maybe_reload()
        key = self._signing.get((tenant_id, alg))
        return key if key is not None else self.ensure(tenant_id, alg)

    def verification_key(self, kid: str) -> SigningKey | None:
        """The published key with this ``kid``, or None. An unknown kid triggers at most one reload a second."""
        self._maybe_reload()
        key = self._by_kid.get(kid)
        if key is None and time.monotonic() - self._last_miss_reload > 1.0:
            self._last_miss_reload = time.monotonic()
            self._reload()
            key = self._by_kid.get(kid)
        return key

    def jwks(self, tenant_id: str) -> dict[str, Any]:
        self._maybe_reload()
        return {"keys": [key.public_jwk for key in self._by_kid.values() if key.tenant_id == tenant_id]}

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._loaded_at > self._refresh_seconds:
            self._reload()

    def _reload(self) -> None:
        with self._db.transaction() as conn:
            rows = repo.all_published(conn)
        by_kid: dict[str, SigningKey] = {}
        signing: dict[tuple[str, str], SigningKey] = {}
        for row in sorted(rows, key=lambda r: (r.created_at, r.kid)):
            private_key = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
            jwk = row.public_jwk if isinstance(row.public_jwk, dict) else json.loads(row.public_jwk)
            jose_key = (ECKey if row.alg == "ES256" else RSAKey).import_key(row.private_pem, {"kid": row.kid})
            key = SigningKey(row.kid, row.tenant_id, row.alg, private_key, private_key.public_key(), jwk, jose_key)
            by_kid[row.kid] = key
            signing[(row.tenant_id, row.alg)] = key  # newest wins
        with self._lock:
            self._by_kid = by_kid
            self._signing = signing
            self._loaded_at = time.monotonic()
