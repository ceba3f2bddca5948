"""Application secrets. Tools may only create temporary ones (they expire, by default within the hour, and
the token endpoint enforces it); production secrets are created in the web console and shown once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from idp_mcp.core.applications import ApplicationNotFound
from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import digest, digests_equal, new_id, new_secret
from idp_mcp.domain import Actor, Client, Clock, as_utc
from idp_mcp.errors import ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import clients as clients_repo
from idp_mcp.store.repos import secrets as repo

SecretKind = Literal["temporary", "production"]


@dataclass(frozen=True)
class IssuedSecret:
    """A secret at the only moment its value is known."""

    id: str
    value: str
    kind: SecretKind
    expires_at: datetime | None


@dataclass(frozen=True)
class SecretInfo:
    id: str
    kind: SecretKind
    last_four: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


class ClientSecrets:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog, temporary_ttl_seconds: int) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._temporary_ttl = timedelta(seconds=temporary_ttl_seconds)

    def create(self, tenant_id: str, client_id: str, kind: SecretKind, actor: Actor) -> IssuedSecret:
        """Create a secret for a confidential application; the audit row names it by id, never by value."""
        now = self._clock()
        value = new_secret(32)
        secret_id = new_id(8)
        expires_at = now + self._temporary_ttl if kind == "temporary" else None
        with self._db.transaction() as conn:
            client = clients_repo.get(conn, tenant_id, client_id)
            if client is None or client.origin != "application":
                raise _not_found(client_id)
            if client.is_public:
                raise ValidationFailed(
                    "Only confidential applications (traditional, m2m) have secrets; this one is a public client "
                    "that signs users in with PKCE and no secret."
                )
            repo.insert_secret(
                conn,
                {
                    "id": secret_id,
                    "tenant_id": tenant_id,
                    "client_id": client_id,
                    "kind": kind,
                    "digest": digest(value),
                    "last_four": value[-4:],
                    "created_at": now,
                    "expires_at": expires_at,
                },
            )
            expiry = expires_at.isoformat() if expires_at else None
            self._audit.write(
                conn, actor, f"application.secret.create_{kind}", target_type="application", target_id=client_id,
                tenant_id=tenant_id, details={"secret_id": secret_id, "expires_at": expiry},
            )  # fmt: skip
        return IssuedSecret(secret_id, value, kind, expires_at)

    def revoke_temporary(self, tenant_id: str, client_id: str, actor: Actor) -> int:
        with self._db.transaction() as conn:
            client = clients_repo.get(conn, tenant_id, client_id)
            if client is None or client.origin != "application":
                raise _not_found(client_id)
            count = repo.revoke(conn, tenant_id, client_id, "temporary", self._clock())
            self._audit.write(
                conn, actor, "application.secret.revoke_temporary", target_type="application", target_id=client_id,
                tenant_id=tenant_id, details={"revoked": count},
            )  # fmt: skip
        return count

    def list(self, tenant_id: str, client_id: str) -> list[SecretInfo]:
        now = self._clock()
        with self._db.read() as conn:
            rows = repo.for_client(conn, tenant_id, client_id)
        return [
            SecretInfo(
                id=row.id,
                kind=row.kind,
                last_four=row.last_four,
                created_at=as_utc(row.created_at),
                expires_at=as_utc(row.expires_at) if row.expires_at else None,
                revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
                active=_active(row, now),
            )
            for row in rows
        ]

    def verify(self, tenant_id: str, client_id: str, presented: str) -> bool:
        """True when ``presented`` is an active secret of the application (compared in constant time)."""
        if not presented or len(presented) > 256:
            return False
        with self._db.read() as conn:
            rows = repo.for_client(conn, tenant_id, client_id)
        return StoredSecrets(rows, self._clock).verify(presented)

    def client_for_authentication(self, tenant_id: str, client_id: str) -> tuple[Client, StoredSecrets] | None:
        """A client and, for a confidential application, its secrets, read in one transaction (the token
        endpoint's client authentication needs both). Nothing is kept: each request reads them afresh, so a
        revoked or expired secret is refused at once."""
        with self._db.read() as conn:
            client = clients_repo.get(conn, tenant_id, client_id)
            if client is None:
                return None
            confidential = client.origin == "application" and not client.is_public
            rows = repo.for_client(conn, tenant_id, client_id) if confidential else []
        return client, StoredSecrets(rows, self._clock)


class StoredSecrets:
    """An application's secrets as read for one request."""

    def __init__(self, rows: list[Any], clock: Clock) -> None:
        self._rows = rows
        self._clock = clock

    def verify(self, presented: str) -> bool:
        """True when ``presented`` is one of these secrets and still active now (compared in constant time)."""
        if not presented or len(presented) > 256:
            return False
        presented_digest = digest(presented)
        now = self._clock()
        matched = False
        for row in self._rows:  # compare with every secret so timing does not tell which one matched
            if digests_equal(presented_digest, row.digest) and _active(row, now):
                matched = True
        return matched


def _not_found(client_id: str) -> ApplicationNotFound:
    return ApplicationNotFound(
        f"No application '{client_id[:64]}' in this tenant. Call listApplications to see the ids."
    )


def _active(row: object, now: datetime) -> bool:
    revoked_at = getattr(row, "revoked_at", None)
    expires_at = getattr(row, "expires_at", None)
    return revoked_at is None and (expires_at is None or as_utc(expires_at) > now)
