"""Consents, authorization codes and refresh-token families: the state behind the token endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import digest, new_id
from idp_mcp.domain import Actor, Clock, User, as_utc
from idp_mcp.store.db import Database
from idp_mcp.store.repos import grants as repo
from idp_mcp.store.repos import users as users_repo


@dataclass(frozen=True)
class CodeRecord:
    tenant_id: str
    client_id: str
    user_id: str
    grant_id: str
    redirect_uri: str
    scope: str
    resource: str | None
    acting_tenant_id: str | None
    code_challenge: str
    code_challenge_method: str
    nonce: str | None
    auth_time: datetime
    expires_at: datetime
    amr: tuple[str, ...] = ()  # how the user signed in (RFC 8176), for the ID token
    acr: str | None = None


@dataclass(frozen=True)
class RefreshRecord:
    tenant_id: str
    family_id: str
    client_id: str
    user_id: str
    scope: str
    resource: str | None
    acting_tenant_id: str | None
    auth_time: datetime | None
    expires_at: datetime
    amr: tuple[str, ...] = ()
    acr: str | None = None


@dataclass(frozen=True)
class PresentedCode:
    """A valid, not yet consumed code, and its user as read in the same transaction (None if deleted)."""

    record: CodeRecord
    user: User | None


@dataclass(frozen=True)
class PresentedRefreshToken:
    """A usable, not yet rotated refresh token, and its user as read in the same transaction."""

    record: RefreshRecord
    user: User | None


@dataclass(frozen=True)
class Successor:
    """The refresh token issued in the same transaction that spends a code or rotates a refresh token."""

    token: str
    record: RefreshRecord


class Grants:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit

    def record_consent(
        self,
        *,
        tenant_id: str,
        user_id: str,
        client_id: str,
        client_name: str,
        acting_tenant_id: str | None,
        scope: str,
        resource: str | None,
    ) -> str:
        grant_id = new_id(16)
        with self._db.transaction() as conn:
            repo.insert_grant(
                conn,
                {
                    "id": grant_id,
                    "tenant_id": tenant_id,
                    "user_id": user_id,
                    "client_id": client_id,
                    "acting_tenant_id": acting_tenant_id,
                    "scope": scope,
                    "resource": resource,
                    "created_at": self._clock(),
                },
            )
            self._audit.write(
                conn,
                Actor(tenant_id=tenant_id, sub=user_id, client_id=client_id, client_name=client_name),
                "oauth.consent",
                target_type="client",
                target_id=client_id,
                details={"scope": scope, "resource": resource, "acting_tenant": acting_tenant_id},
            )
        return grant_id

    def has_consent(self, tenant_id: str, user_id: str, client_id: str, scopes: list[str]) -> bool:
        """Whether the user already allowed this client everything it asks for now."""
        with self._db.read() as conn:
            row = repo.latest_grant(conn, tenant_id, user_id, client_id)
        return row is not None and set(scopes) <= set(row.scope.split())

    def client_approved(self, tenant_id: str, client_id: str) -> bool:
        """Whether any user of the tenant gave this client a consent that still stands (its redirect URIs are then
        trusted for answers sent without the user, such as ``prompt=none`` errors)."""
        with self._db.read() as conn:
            return repo.any_grant(conn, tenant_id, client_id)

    def save_code(self, code: str, record: CodeRecord) -> None:
        with self._db.transaction() as conn:
            repo.insert_code(
                conn,
                {
                    "code_digest": digest(code),
                    "created_at": self._clock(),
                    **{**record.__dict__, "amr": list(record.amr)},
                },
            )

    def find_code(self, tenant_id: str, code: str, client_id: str) -> PresentedCode | None:
        """A code that ``client_id`` may still exchange, without spending it, so the request can be checked first
        (PKCE, redirect URI, resource); spend it with :meth:`redeem_code`. One statement, which also reads the
        code's user for the ID token.

        A code already spent is a replay: every token issued from it is revoked (RFC 6749 §4.1.2).
        """
        now = self._clock()
        with self._db.read() as conn:
            found = repo.get_code_with_user(conn, tenant_id, digest(code))
        if found is None or found[0].client_id != client_id:
            return None
        row, user = found
        if row.consumed_at is not None:
            self.revoke_family(tenant_id, row.grant_id, reason="code_replay", client_id=client_id)
            return None
        if as_utc(row.expires_at) <= now:
            return None
        return PresentedCode(_code_record(row), user)

    def redeem_code(self, tenant_id: str, code: str, client_id: str, successor: Successor | None) -> bool:
        """Spend a code found by :meth:`find_code` and store the refresh token issued for it, in one transaction:
        either both happen or neither does.

        False when the code was spent in the meantime (a concurrent replay): its family is then revoked, in the
        same transaction, and nothing may be returned to the client.
        """
        now = self._clock()
        with self._db.transaction() as conn:
            code_digest = digest(code)
            if repo.consume_code(conn, tenant_id, code_digest, now):
                if successor is not None:
                    self._insert_refresh_token(conn, successor, now)
                return True
            row = repo.get_code(conn, tenant_id, code_digest)
            if row is not None:
                self._revoke_family(conn, tenant_id, row.grant_id, now, reason="code_replay", client_id=client_id)
        return False

    def save_refresh_token(self, token: str, record: RefreshRecord) -> None:
        with self._db.transaction() as conn:
            self._insert_refresh_token(conn, Successor(token, record), self._clock())

    def find_refresh_token(self, tenant_id: str, token: str, client_id: str) -> PresentedRefreshToken | None:
        """A usable refresh token's record and its user (one statement), without rotating it, so a request
        can be checked before the token is spent (RFC 6749 §6: the old token is revoked only once a new one is
        issued). Spend it with :meth:`rotate_refresh_token`. A token already rotated out is reuse: its family is
        revoked (OAuth 2.1 §4.3.1).
        """
        now = self._clock()
        with self._db.read() as conn:
            found = repo.get_refresh_token_with_user(conn, tenant_id, digest(token))
        if found is None or found[0].client_id != client_id:
            return None
        row, user = found
        if row.revoked_at is not None or row.family_revoked is not None or as_utc(row.expires_at) <= now:
            return None
        if row.rotated_at is not None:
            self.revoke_family(tenant_id, row.family_id, reason="refresh_token_reuse", client_id=client_id)
            return None
        return PresentedRefreshToken(_refresh_record(row), user)

    def rotate_refresh_token(self, tenant_id: str, token: str, client_id: str, successor: Successor | None) -> bool:
        """Rotate out a refresh token found by :meth:`find_refresh_token` and store its successor, in one
        transaction: if the successor cannot be stored, the presented token stays usable.

        False when the token was rotated or revoked in the meantime (a concurrent use counts as reuse): its family
        is then revoked, in the same transaction, and nothing may be returned to the client.
        """
        now = self._clock()
        token_digest = digest(token)
        with self._db.transaction() as conn:
            if repo.rotate_refresh_token(conn, tenant_id, token_digest, now):
                if successor is not None:
                    self._insert_refresh_token(conn, successor, now)
                return True
            row = repo.get_refresh_token(conn, tenant_id, token_digest)
            if row is not None:
                self._revoke_family(
                    conn, tenant_id, row.family_id, now, reason="refresh_token_reuse", client_id=client_id
                )
        return False

    def _insert_refresh_token(self, conn: Connection, successor: Successor, now: datetime) -> None:
        repo.insert_refresh_token(
            conn,
            {
                "token_digest": digest(successor.token),
                "created_at": now,
                **{**successor.record.__dict__, "amr": list(successor.record.amr)},
            },
        )

    def peek_refresh_token(self, tenant_id: str, token: str) -> RefreshRecord | None:
        """An active refresh token's record, with no side effect (for introspection): not rotated, revoked or
        expired, its family not revoked, and its user still there and not suspended. One statement."""
        if not token or len(token) > 256:
            return None
        with self._db.read() as conn:
            found = repo.get_refresh_token_with_user(conn, tenant_id, digest(token))
        if found is None:
            return None
        row, user = found
        if row.rotated_at is not None or row.revoked_at is not None or row.family_revoked is not None:
            return None
        if user is None or user.suspended:
            return None
        return _refresh_record(row) if as_utc(row.expires_at) > self._clock() else None

    def access_token_active(self, tenant_id: str, family_id: str, user_id: str | None) -> bool:
        """Whether an access token's grant still stands (for introspection): its family is not revoked and, for a
        token issued to a user (``user_id``; None for client credentials), the user exists and is not suspended."""
        with self._db.read() as conn:
            if repo.is_family_revoked(conn, family_id):
                return False
            if user_id is None:
                return True
            user = users_repo.get(conn, tenant_id, user_id)
        return user is not None and not user.suspended

    def find_refresh_family(self, tenant_id: str, token: str) -> tuple[str, str] | None:
        """(family_id, client_id) of a refresh token, for revocation."""
        with self._db.read() as conn:
            row = repo.get_refresh_token(conn, tenant_id, digest(token))
        return (row.family_id, row.client_id) if row else None

    def revoke_family(self, tenant_id: str, family_id: str, *, reason: str, client_id: str | None) -> None:
        with self._db.transaction() as conn:
            self._revoke_family(conn, tenant_id, family_id, self._clock(), reason=reason, client_id=client_id)

    def _revoke_family(
        self, conn: Connection, tenant_id: str, family_id: str, now: datetime, *, reason: str, client_id: str | None
    ) -> None:
        repo.revoke_family(conn, tenant_id, family_id, now, reason)
        self._audit.write(
            conn,
            Actor(tenant_id=tenant_id, sub=None, client_id=client_id),
            "oauth.revoke_grant",
            target_type="grant",
            target_id=family_id,
            outcome="success",
            details={"reason": reason},
        )

    def is_family_revoked(self, family_id: str) -> bool:
        with self._db.read() as conn:
            return repo.is_family_revoked(conn, family_id)


def _code_record(row: Any) -> CodeRecord:
    return CodeRecord(
        tenant_id=row.tenant_id,
        client_id=row.client_id,
        user_id=row.user_id,
        grant_id=row.grant_id,
        redirect_uri=row.redirect_uri,
        scope=row.scope,
        resource=row.resource,
        acting_tenant_id=row.acting_tenant_id,
        code_challenge=row.code_challenge,
        code_challenge_method=row.code_challenge_method,
        nonce=row.nonce,
        auth_time=as_utc(row.auth_time),
        expires_at=as_utc(row.expires_at),
        amr=tuple(row.amr or ()),
        acr=row.acr,
    )


def _refresh_record(row: Any) -> RefreshRecord:
    return RefreshRecord(
        tenant_id=row.tenant_id,
        family_id=row.family_id,
        client_id=row.client_id,
        user_id=row.user_id,
        scope=row.scope,
        resource=row.resource,
        acting_tenant_id=row.acting_tenant_id,
        auth_time=as_utc(row.auth_time) if row.auth_time else None,
        expires_at=as_utc(row.expires_at),
        amr=tuple(row.amr or ()),
        acr=row.acr,
    )
