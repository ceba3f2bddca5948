"""Signing keys: generated on first use, persisted, published in JWKS, cached in memory, rotated and retired.

A tenant may have several published keys per algorithm: the newest signs, the older ones stay in JWKS so the
tokens they signed keep verifying until they expire. Retiring a key takes it out of JWKS and makes every token
it signed invalid.

The cache holds each tenant's keys on their own: a tenant's keys are loaded (one indexed query) when first used
and again once they are ``refresh_seconds`` old (IDP_MCP_KEY_CACHE_SECONDS), so a rotation done by one replica (or
the command line) is used for signing by every replica within that interval. An unknown ``kid`` makes the tenant's
keys reload, so tokens signed with a new key verify everywhere at once; but at most once per ``miss_reload_seconds``
per tenant, and a kid still unknown after a reload is remembered as unknown (per tenant, bounded) for the cache
interval: a stream of made-up kids, which anyone can send, costs one small query per tenant per second at most,
and the work never grows with the number of tenants.

Keys in use are refreshed ahead of time, in the background: once a tenant's keys are ``REFRESH_AHEAD`` of the
interval old, the next use answers from memory and starts one reload in a thread of its own. A tenant that is used
steadily therefore never waits for a reload, and its keys are still never older than the interval (a tenant not
used for that long is reloaded by the next use, in the caller's thread, as before).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.exc import IntegrityError

from idp_mcp.core.audit import AuditLog
from idp_mcp.domain import Actor, Clock, as_utc
from idp_mcp.errors import KeyInUse, KeyNotFound, TenantNotFound, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import keys as repo
from idp_mcp.store.repos import tenants as tenants_repo

SUPPORTED_ALGS = ("ES256", "RS256")
#: Unknown kids remembered per tenant; the oldest are forgotten first.
UNKNOWN_KIDS_PER_TENANT = 1024
#: How old (a share of the cache interval) a tenant's keys are when a use starts their reload in the background.
REFRESH_AHEAD = 0.75

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    tenant_id: str
    alg: str
    private_key: PrivateKeyTypes
    public_key: PublicKeyTypes
    public_jwk: dict[str, Any]
    jose_key: ECKey | RSAKey  # the same private key for joserfc (authlib's OpenID Connect signs with it)


@dataclass(frozen=True)
class KeyInfo:
    """What an operator sees of a key (never the private part)."""

    kid: str
    tenant_id: str
    alg: str
    created_at: datetime
    retired_at: datetime | None
    #: signing: the newest published key of its tenant and algorithm; published: in JWKS, verifies only;
    #: retired: out of JWKS, the tokens it signed are refused.
    status: Literal["signing", "published", "retired"]


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


def _new_key_values(tenant_id: str, alg: str, created_at: datetime) -> dict[str, Any]:
    private_key = _generate(alg)
    jwk = _public_jwk(private_key, alg)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "kid": jwk["kid"],
        "tenant_id": tenant_id,
        "alg": alg,
        "private_pem": pem,
        "public_jwk": jwk,
        "created_at": created_at,
    }


def _statuses(rows: list[Any]) -> list[KeyInfo]:
    """Rows (any order) → KeyInfo, marking the newest unretired key of each tenant and algorithm as signing."""
    ordered = sorted(rows, key=lambda r: (r.tenant_id, as_utc(r.created_at), r.kid))
    signing: dict[tuple[str, str], str] = {}
    for row in ordered:
        if row.retired_at is None:
            signing[(row.tenant_id, row.alg)] = row.kid  # newest wins, as in the cache
    return [
        KeyInfo(
            kid=row.kid,
            tenant_id=row.tenant_id,
            alg=row.alg,
            created_at=as_utc(row.created_at),
            retired_at=as_utc(row.retired_at) if row.retired_at is not None else None,
            status="retired"
            if row.retired_at is not None
            else ("signing" if signing[(row.tenant_id, row.alg)] == row.kid else "published"),
        )
        for row in ordered
    ]


@dataclass(frozen=True)
class _Published:
    """One load of a tenant's published keys; replaced whole by the next load, so a reader holding one sees one
    consistent load even while a background reload runs."""

    by_kid: dict[str, SigningKey] = field(default_factory=dict)
    signing: dict[str, SigningKey] = field(default_factory=dict)  # alg → the key that signs


@dataclass
class _TenantKeys:
    """One tenant's published keys as last loaded, and what is known not to be among them."""

    published: _Published = field(default_factory=_Published)
    loaded_at: float = float("-inf")
    last_miss_reload: float = float("-inf")
    unknown: OrderedDict[str, float] = field(default_factory=OrderedDict)  # kid → when a reload did not find it
    loading: threading.Lock = field(default_factory=threading.Lock)  # one load at a time per tenant
    refreshing: bool = False  # a background reload is under way


class KeyRing:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        refresh_seconds: float = 60.0,
        *,
        audit: AuditLog | None = None,
        token_lifetime_seconds: float = 3600.0,
        miss_reload_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._audit = audit or AuditLog(db, clock)
        # How long a token signed just before a rotation may still be presented: retiring earlier refuses it.
        self._token_lifetime = token_lifetime_seconds
        self._miss_reload_seconds = miss_reload_seconds
        self._monotonic = monotonic  # the cache's clock, so tests can age it
        self._background: threading.Thread | None = None  # the newest background reload (tests wait for it)
        self._lock = threading.Lock()  # guards the dict of tenants and each _TenantKeys' fields
        self._tenants: dict[str, _TenantKeys] = {}

    def ensure(self, tenant_id: str, alg: str = "ES256") -> SigningKey:
        """The key that signs for ``tenant_id`` with ``alg``; generated and stored on first use."""
        key = self._fresh(tenant_id)[1].signing.get(alg)
        if key is not None:
            return key
        values = _new_key_values(tenant_id, alg, self._clock())
        try:
            with self._db.transaction() as conn:
                if not any(row.alg == alg for row in repo.active_keys(conn, tenant_id)):
                    repo.insert_key(conn, values)
        except IntegrityError:
            pass  # another replica stored one first; load it below
        return self._reload(tenant_id).published.signing[alg]

    def rotate(self, tenant_id: str, alg: str = "ES256", *, actor: Actor | None = None) -> KeyInfo:
        """A new key for ``tenant_id`` and ``alg`` that signs from now on (on other replicas within the cache
        interval). The previous keys stay published, so the tokens they signed stay valid until they expire;
        retire them with :meth:`retire` once those tokens have expired. Audited as ``key.rotate``."""
        if alg not in SUPPORTED_ALGS:
            raise ValidationFailed(f"The algorithm must be one of {', '.join(SUPPORTED_ALGS)}.")
        actor = actor or Actor(tenant_id=tenant_id, sub=None)
        with self._db.transaction() as conn:
            if tenants_repo.get(conn, tenant_id) is None:
                raise TenantNotFound(f"Tenant '{tenant_id}' does not exist.")
            previous = [row for row in repo.active_keys(conn, tenant_id) if row.alg == alg]
            created_at = self._clock()
            if previous:
                # The newest key signs: make sure the new one sorts after every existing one, even with a clock
                # that stands still (tests) or lags another replica's.
                created_at = max(created_at, as_utc(previous[0].created_at) + timedelta(milliseconds=1))
            values = _new_key_values(tenant_id, alg, created_at)
            repo.insert_key(conn, values)
            self._audit.write(
                conn, actor, "key.rotate", target_type="signing_key", target_id=values["kid"], tenant_id=tenant_id,
                details={"alg": alg, "previous": [row.kid for row in previous]},
            )  # fmt: skip
        self._reload(tenant_id)
        return next(info for info in self.list_keys(tenant_id) if info.kid == values["kid"])

    def retire(self, tenant_id: str, kid: str, *, actor: Actor | None = None, force: bool = False) -> KeyInfo:
        """Take a key that no longer signs out of JWKS; every token it signed is refused from then on (on other
        replicas within the cache interval). Refused for the key that signs (rotate first) and, unless
        ``force``, while tokens it signed may still be unexpired. Audited as ``key.retire``."""
        retired = self._retire(tenant_id, lambda info: info.kid == kid, actor=actor, force=force)
        if not retired:
            raise KeyNotFound(f"Tenant '{tenant_id}' has no published key '{kid[:64]}'.")
        return retired[0]

    def retire_previous(self, tenant_id: str, *, actor: Actor | None = None, force: bool = False) -> list[KeyInfo]:
        """Retire every published key of ``tenant_id`` that no longer signs (see :meth:`retire`); all or none."""
        return self._retire(tenant_id, lambda info: info.status == "published", actor=actor, force=force)

    def list_keys(self, tenant_id: str | None = None) -> list[KeyInfo]:
        """Every key, retired ones included, oldest first; of one tenant when ``tenant_id`` is given."""
        with self._db.read() as conn:
            return _statuses(repo.all_keys(conn, tenant_id))

    def _retire(self, tenant_id: str, chosen: Any, *, actor: Actor | None, force: bool) -> list[KeyInfo]:
        actor = actor or Actor(tenant_id=tenant_id, sub=None)
        now = as_utc(self._clock())
        with self._db.transaction() as conn:
            infos = _statuses(repo.all_keys(conn, tenant_id))
            targets = [info for info in infos if info.status != "retired" and chosen(info)]
            for info in targets:
                if info.status == "signing":
                    raise KeyInUse(
                        f"Key '{info.kid}' still signs the tokens of tenant '{tenant_id}'. Rotate first "
                        "(idp-mcp keys rotate), then retire it once the tokens it signed have expired."
                    )
                # Other replicas may sign with it until they reload their keys, and those tokens then live
                # for a token lifetime.
                stopped_signing = min(
                    (
                        other.created_at
                        for other in infos
                        if (other.tenant_id, other.alg) == (info.tenant_id, info.alg)
                        and other.created_at > info.created_at
                    ),
                    default=now,
                )
                safe_at = stopped_signing + timedelta(seconds=self._token_lifetime + self._refresh_seconds)
                if not force and now < safe_at:
                    until = safe_at.isoformat(timespec="seconds")
                    raise KeyInUse(
                        f"Tokens signed by key '{info.kid}' may be valid until {until}; retire it after that "
                        "(or force it, which refuses those tokens at once)."
                    )
            for info in targets:
                repo.retire(conn, info.kid, now)
                self._audit.write(
                    conn, actor, "key.retire", target_type="signing_key", target_id=info.kid, tenant_id=tenant_id,
                    details={"alg": info.alg, "forced": force},
                )  # fmt: skip
        self._reload(tenant_id)
        retired = {info.kid for info in targets}
        return [info for info in self.list_keys(tenant_id) if info.kid in retired]

    def signing_key(self, tenant_id: str, alg: str = "ES256") -> SigningKey:
        key = self._fresh(tenant_id)[1].signing.get(alg)
        return key if key is not None else self.ensure(tenant_id, alg)

    def verification_key(self, kid: str, *, tenant_id: str) -> SigningKey | None:
        """The published key of ``tenant_id`` with this ``kid``, or None. An unknown kid reloads the tenant's keys,
        at most once per ``miss_reload_seconds``; one still unknown after a reload is refused without a reload for
        the cache interval. May read the database: from async code, ask :meth:`cached_verification_key` first."""
        keys, published = self._fresh(tenant_id)
        key = published.by_kid.get(kid)
        if key is not None or not self._may_reload_for(keys, kid, claim=True):
            return key
        keys = self._reload(tenant_id)
        key = keys.published.by_kid.get(kid)
        if key is None:
            self._remember_unknown(keys, kid)
        return key

    def cached_verification_key(self, kid: str, *, tenant_id: str) -> tuple[bool, SigningKey | None]:
        """``(True, key or None)`` when memory answers for ``kid``; ``(False, None)`` when the answer needs a database
        read (call :meth:`verification_key` in a worker thread). Never reads the database itself."""
        now = self._monotonic()
        with self._lock:
            keys = self._tenants.get(tenant_id)
            if keys is None or now - keys.loaded_at > self._refresh_seconds:
                return False, None
            key = keys.published.by_kid.get(kid)
        self._refresh_ahead(tenant_id, keys, now)
        if key is not None:
            return True, key
        return (not self._may_reload_for(keys, kid, claim=False)), None

    def jwks(self, tenant_id: str) -> dict[str, Any]:
        return {"keys": [key.public_jwk for key in self._fresh(tenant_id)[1].by_kid.values()]}

    def _may_reload_for(self, keys: _TenantKeys, kid: str, *, claim: bool) -> bool:
        """Whether an unknown ``kid`` may reload the tenant's keys now: not one a recent reload did not find, and
        not sooner than ``miss_reload_seconds`` after the tenant's last such reload. ``claim``: take that slot."""
        now = self._monotonic()
        with self._lock:
            found_unknown_at = keys.unknown.get(kid)
            if found_unknown_at is not None and now - found_unknown_at <= self._refresh_seconds:
                return False
            if now - keys.last_miss_reload < self._miss_reload_seconds:
                return False
            if claim:
                keys.last_miss_reload = now
            return True

    def _remember_unknown(self, keys: _TenantKeys, kid: str) -> None:
        with self._lock:
            keys.unknown[kid] = self._monotonic()
            keys.unknown.move_to_end(kid)
            while len(keys.unknown) > UNKNOWN_KIDS_PER_TENANT:
                keys.unknown.popitem(last=False)

    def _fresh(self, tenant_id: str) -> tuple[_TenantKeys, _Published]:
        """The tenant's keys and the load to answer from, loaded first when never loaded or older than the cache
        interval. The load is taken before a refresh ahead starts, so this use answers from memory."""
        with self._lock:
            keys = self._tenants.get(tenant_id)
            published = keys.published if keys is not None else None
        now = self._monotonic()
        if keys is not None and published is not None and now - keys.loaded_at <= self._refresh_seconds:
            self._refresh_ahead(tenant_id, keys, now)
            return keys, published
        keys = self._reload(tenant_id, only_if_older_than=self._refresh_seconds)
        return keys, keys.published

    def _refresh_ahead(self, tenant_id: str, keys: _TenantKeys, now: float) -> None:
        """Start one background reload of keys that are getting old (see the module's docstring); never waits."""
        with self._lock:
            if keys.refreshing or now - keys.loaded_at <= self._refresh_seconds * REFRESH_AHEAD:
                return
            keys.refreshing = True

        def reload() -> None:
            try:
                self._reload(tenant_id, only_if_older_than=self._refresh_seconds * REFRESH_AHEAD)
            except Exception:  # the next use past the interval reloads in its own thread and raises there
                logger.exception("keys: the background reload of tenant %s failed", tenant_id)
            finally:
                with self._lock:
                    keys.refreshing = False

        thread = threading.Thread(target=reload, name=f"idp-mcp-keys-{tenant_id}"[:64], daemon=True)
        self._background = thread
        thread.start()

    def wait_for_background_reload(self, timeout: float = 10.0) -> None:
        """Wait for the newest background reload to end (for tests and orderly shutdown)."""
        thread = self._background
        if thread is not None:
            thread.join(timeout)

    def _reload(self, tenant_id: str, *, only_if_older_than: float | None = None) -> _TenantKeys:
        """Load the tenant's published keys. With ``only_if_older_than``, callers that queued behind another
        thread's load of the same tenant take its result instead of loading again."""
        with self._lock:
            keys = self._tenants.setdefault(tenant_id, _TenantKeys())
        with keys.loading:
            if only_if_older_than is not None and self._monotonic() - keys.loaded_at <= only_if_older_than:
                return keys
            with self._db.read() as conn:
                rows = repo.published(conn, tenant_id)
            by_kid: dict[str, SigningKey] = {}
            signing: dict[str, SigningKey] = {}
            for row in sorted(rows, key=lambda r: (as_utc(r.created_at), r.kid)):
                private_key = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
                jwk = row.public_jwk if isinstance(row.public_jwk, dict) else json.loads(row.public_jwk)
                jose_key = (ECKey if row.alg == "ES256" else RSAKey).import_key(row.private_pem, {"kid": row.kid})
                key = SigningKey(row.kid, row.tenant_id, row.alg, private_key, private_key.public_key(), jwk, jose_key)
                by_kid[row.kid] = key
                signing[row.alg] = key  # newest wins
            with self._lock:
                keys.published = _Published(by_kid, signing)
                keys.loaded_at = self._monotonic()
                for kid in by_kid:
                    keys.unknown.pop(kid, None)
        return keys
