"""Application secrets. Tools may only create temporary ones (they expire, by default within the hour, and
the token endpoint enforces it); production secrets are created in the web console and shown once. Any single
secret can be revoked by id (tools: temporary ones only); rotation is a new production secret alongside the old one
until the old one is revoked. Secrets are read on every token request, so a revocation holds at once everywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection

from idp_mcp.core.applications import ApplicationNotFound
from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import digest, digests_equal, new_id, new_secret, seal, unseal
from idp_mcp.core.permissions import ResourceAccess, Subject, evaluate_in
from idp_mcp.domain import Actor, Client, Clock, as_utc
from idp_mcp.errors import Forbidden, NotFound, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import clients as clients_repo
from idp_mcp.store.repos import secrets as repo

SecretKind = Literal["temporary", "production"]
#: How long a new production secret waits to be shown in the console (once) before it can no longer be.
REVEAL_TTL = timedelta(minutes=10)
_REVEAL_PURPOSE = "idp-mcp production secret reveal"
_SECRET_ID = re.compile(r"[0-9a-f]{1,32}")  # what new_id makes


class SecretNotFound(NotFound):
    code = "secret.not_found"


class ProductionSecretInConsole(Forbidden):
    """A production secret is revoked by a person in the console, not by an agent."""

    code = "secret.production_in_console"


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


@dataclass(frozen=True)
class RevokedSecret:
    secret: SecretInfo
    already_revoked: bool  # it had been revoked before: nothing was written


class ClientSecrets:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog, temporary_ttl_seconds: int) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._temporary_ttl = timedelta(seconds=temporary_ttl_seconds)

    def create(self, tenant_id: str, client_id: str, kind: SecretKind, actor: Actor) -> IssuedSecret:
        """Create a secret for a confidential application; the audit row names it by id, never by value."""
        with self._db.transaction() as conn:
            return self.insert_in(conn, tenant_id, client_id, kind, actor)

    def create_production_to_reveal(self, tenant_id: str, client_id: str, actor: Actor, session_id: str) -> str:
        """Create a production secret and keep its value for one showing to the browser session ``session_id``
        (see :meth:`take_reveal`), in one transaction; returns the secret's id.

        The value is stored sealed with a key derived from the session id, which the database does not hold (it keeps
        the session id's digest), so neither a database reader nor another session can read it; it is deleted when
        shown and unusable after :data:`REVEAL_TTL`.
        """
        with self._db.transaction() as conn:
            repo.purge_reveals(conn, self._clock())
            issued = self.insert_in(conn, tenant_id, client_id, "production", actor)
            binding = _binding(tenant_id, client_id, issued.id)
            repo.insert_reveal(
                conn,
                {
                    "secret_id": issued.id,
                    "tenant_id": tenant_id,
                    "client_id": client_id,
                    "session_digest": digest(session_id),
                    "sealed": seal(session_id, _REVEAL_PURPOSE, issued.value, binding),
                    "expires_at": self._clock() + REVEAL_TTL,
                },
            )
        return issued.id

    def take_reveal(self, tenant_id: str, client_id: str, secret_id: str, session_id: str) -> IssuedSecret | None:
        """The value of a production secret created by this session, the first time it is asked for; None after
        that, for another session, or once :data:`REVEAL_TTL` has passed."""
        if not session_id or len(session_id) > 128 or not _SECRET_ID.fullmatch(secret_id):
            return None
        now = self._clock()
        with self._db.transaction() as conn:
            row = repo.take_reveal(conn, tenant_id, client_id, secret_id, digest(session_id))
        if row is None or as_utc(row.expires_at) <= now:
            return None
        value = unseal(session_id, _REVEAL_PURPOSE, row.sealed, _binding(tenant_id, client_id, secret_id))
        return IssuedSecret(secret_id, value, "production", None) if value is not None else None

    def insert_in(
        self, conn: Connection, tenant_id: str, client_id: str, kind: SecretKind, actor: Actor
    ) -> IssuedSecret:
        """Create a secret inside the caller's transaction, with its audit row (see :meth:`create`)."""
        now = self._clock()
        value = new_secret(32)
        secret_id = new_id(8)
        expires_at = now + self._temporary_ttl if kind == "temporary" else None
        # Locked (PostgreSQL): an application deleted meanwhile is then not found, instead of a foreign-key error.
        client = clients_repo.get(conn, tenant_id, client_id, for_update=True)
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

    def revoke(
        self, tenant_id: str, client_id: str, secret_id: str, actor: Actor, *, production: bool
    ) -> RevokedSecret:
        """Revoke one secret of an application by its id, at once (the token endpoint reads secrets on every
        request). With ``production=False`` (agents) a production secret is refused with
        :class:`ProductionSecretInConsole`. An unknown id, or one of another application or tenant, is
        :class:`SecretNotFound`. A refusal, or a secret revoked already, writes nothing."""
        if not _SECRET_ID.fullmatch(secret_id):  # also keeps NUL and the like away from PostgreSQL
            raise _secret_not_found(secret_id)
        now = self._clock()
        with self._db.transaction() as conn:
            client = clients_repo.get(conn, tenant_id, client_id)
            if client is None or client.origin != "application":
                raise _not_found(client_id)
            row = repo.get_one(conn, tenant_id, client_id, secret_id)
            if row is None:
                raise _secret_not_found(secret_id)
            if row.kind == "production" and not production:
                raise ProductionSecretInConsole(
                    f"Secret '{secret_id}' is a production secret: only a person revokes it, in the web console."
                )
            already = row.revoked_at is not None
            if not already:
                repo.revoke_one(conn, tenant_id, client_id, secret_id, now)
                self._audit.write(
                    conn, actor, "application.secret.revoke", target_type="application", target_id=client_id,
                    tenant_id=tenant_id, details={"secret_id": secret_id, "kind": row.kind},
                )  # fmt: skip
                row = repo.get_one(conn, tenant_id, client_id, secret_id)
            else:
                self._audit.ride(conn)
        return RevokedSecret(_info(row, now), already)

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
        """The application's secrets, newest first, described without their values."""
        now = self._clock()
        with self._db.read() as conn:
            rows = repo.for_client(conn, tenant_id, client_id)
        return [_info(row, now) for row in rows]

    def verify(self, tenant_id: str, client_id: str, presented: str) -> bool:
        """True when ``presented`` is an active secret of the application (compared in constant time)."""
        if not presented or len(presented) > 256:
            return False
        with self._db.read() as conn:
            rows = repo.for_client(conn, tenant_id, client_id)
        return StoredSecrets(rows, self._clock).verify(presented)

    def client_for_authentication(
        self, tenant_id: str, client_id: str, *, resource: str | None = None
    ) -> ClientForToken | None:
        """A client and, for a confidential application, its secrets, read in one transaction (the token
        endpoint's client authentication needs both). Nothing is kept: each request reads them afresh, so a
        revoked or expired secret is refused at once. With ``resource`` (a client-credentials request for an API),
        what the application holds on that API is read in the same transaction; the grant uses it only once the
        client has authenticated."""
        with self._db.read() as conn:
            client = clients_repo.get(conn, tenant_id, client_id)
            if client is None:
                return None
            confidential = client.origin == "application" and not client.is_public
            rows = repo.for_client(conn, tenant_id, client_id) if confidential else []
            access = (
                evaluate_in(conn, tenant_id, Subject("application", client_id), resource)
                if resource is not None and confidential
                else None
            )
        return ClientForToken(client, StoredSecrets(rows, self._clock), resource if confidential else None, access)


@dataclass(frozen=True)
class ClientForToken:
    """What :meth:`ClientSecrets.client_for_authentication` read: the client, its secrets and, when a resource was
    named, the resource as the application holds it (None: no such resource)."""

    client: Client
    secrets: StoredSecrets
    resource: str | None
    access: ResourceAccess | None


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


def _info(row: Any, now: datetime) -> SecretInfo:
    return SecretInfo(
        id=row.id,
        kind=row.kind,
        last_four=row.last_four,
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at) if row.expires_at else None,
        revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
        active=_active(row, now),
    )


def _binding(tenant_id: str, client_id: str, secret_id: str) -> str:
    return f"{tenant_id}\x00{client_id}\x00{secret_id}"


def _secret_not_found(secret_id: str) -> SecretNotFound:
    return SecretNotFound(
        f"No secret '{secret_id[:64]}' for this application. Call getApplication to see its secrets' ids."
    )


def _not_found(client_id: str) -> ApplicationNotFound:
    return ApplicationNotFound(
        f"No application '{client_id[:64]}' in this tenant. Call listApplications to see the ids."
    )


def _active(row: object, now: datetime) -> bool:
    revoked_at = getattr(row, "revoked_at", None)
    expires_at = getattr(row, "expires_at", None)
    return revoked_at is None and (expires_at is None or as_utc(expires_at) > now)
