"""Browser sessions (server-side, found by the digest of a random cookie value) and pending interactions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from idp_mcp.core import devices
from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import digest, new_secret
from idp_mcp.domain import Actor, Clock
from idp_mcp.store.db import Database
from idp_mcp.store.repos import known_devices as devices_repo
from idp_mcp.store.repos import sessions as repo


@dataclass(frozen=True)
class BrowserSession:
    tenant_id: str
    user_id: str
    auth_time: datetime
    # How the user signed in (RFC 8176 method references, e.g. ("pwd",) or ("pwd", "otp", "mfa")) and the acr.
    amr: tuple[str, ...] = ()
    acr: str | None = None


@dataclass(frozen=True)
class Interaction:
    """An authorization request waiting for sign-in and consent."""

    id: str
    tenant_id: str
    client_id: str
    params: dict[str, Any]


class Sessions:
    def __init__(
        self, db: Database, clock: Clock, audit: AuditLog, ttl_seconds: int, interaction_ttl: int,
        device_ttl_seconds: int = 90 * 86400,
    ) -> None:  # fmt: skip
        self._db = db
        self._clock = clock
        self._audit = audit
        self._ttl = timedelta(seconds=ttl_seconds)
        self._interaction_ttl = timedelta(seconds=interaction_ttl)
        self._device_ttl = timedelta(seconds=device_ttl_seconds)

    def start(
        self, tenant_id: str, user_id: str, *, device: str | None = None, amr: tuple[str, ...] = (),
        acr: str | None = None,
    ) -> str:  # fmt: skip
        """Start a session; returns the cookie value (only its digest is stored).

        ``device`` (the browser's device cookie) becomes, or stays, a known device of the user for the device
        lifetime from now (see :mod:`idp_mcp.core.devices`). ``amr``/``acr``: how the user signed in (core.mfa).
        """
        with self._db.transaction() as conn:
            return self.start_in(conn, tenant_id, user_id, device=device, amr=amr, acr=acr)

    def start_in(
        self, conn: Connection, tenant_id: str, user_id: str, *, device: str | None = None,
        amr: tuple[str, ...] = (), acr: str | None = None,
    ) -> str:  # fmt: skip
        """:meth:`start` in the caller's transaction (a second factor is spent in the same one)."""
        raw = new_secret(32)
        now = self._clock()
        device = devices.usable(device)
        repo.purge_expired(conn, now)
        if device is not None:
            devices_repo.purge(conn, now)
            devices_repo.remember(
                conn,
                devices.device_key(tenant_id, user_id, device),
                tenant_id,
                user_id,
                now,
                now + self._device_ttl,
            )
        repo.insert_session(
            conn,
            {
                "id_digest": digest(raw),
                "tenant_id": tenant_id,
                "user_id": user_id,
                "auth_time": now,
                "created_at": now,
                "expires_at": now + self._ttl,
                "amr": list(amr),
                "acr": acr,
            },
        )
        return raw

    def get(self, raw: str | None) -> BrowserSession | None:
        if not raw or len(raw) > 128:
            return None
        with self._db.read() as conn:
            return self.session_in(conn, raw)

    def session_in(self, conn: Connection, raw: str | None) -> BrowserSession | None:
        """The live session of cookie value ``raw``, read in the caller's transaction (one use case, one
        transaction)."""
        if not raw or len(raw) > 128:
            return None
        row = repo.get_session(conn, digest(raw), self._clock())
        if row is None:
            return None
        return BrowserSession(row.tenant_id, row.user_id, row.auth_time, tuple(row.amr or ()), row.acr)

    def end(self, raw: str | None) -> None:
        if not raw or len(raw) > 128:
            return
        with self._db.transaction() as conn:
            row = repo.get_session(conn, digest(raw), self._clock())
            repo.delete_session(conn, digest(raw))
            if row:
                self._audit.write(
                    conn, Actor(tenant_id=row.tenant_id, sub=row.user_id), "session.sign_out",
                    target_type="user", target_id=row.user_id,
                )  # fmt: skip

    def begin_interaction(self, tenant_id: str, client_id: str, params: dict[str, Any]) -> str:
        raw = new_secret(24)
        now = self._clock()
        with self._db.transaction() as conn:
            repo.insert_interaction(
                conn,
                {
                    "id_digest": digest(raw),
                    "tenant_id": tenant_id,
                    "client_id": client_id,
                    "params": params,
                    "created_at": now,
                    "expires_at": now + self._interaction_ttl,
                },
            )
        return raw

    def get_interaction(self, raw: str) -> Interaction | None:
        if not raw or len(raw) > 128:
            return None
        with self._db.read() as conn:
            return self.interaction_in(conn, raw)

    def interaction_in(self, conn: Connection, raw: str) -> Interaction | None:
        """The pending interaction ``raw``, read in the caller's transaction."""
        if not raw or len(raw) > 128:
            return None
        row = repo.get_interaction(conn, digest(raw), self._clock())
        return Interaction(raw, row.tenant_id, row.client_id, dict(row.params)) if row else None

    def finish_interaction(self, raw: str) -> bool:
        """Consume an interaction; False if it was already finished (a double submit)."""
        with self._db.transaction() as conn:
            return repo.delete_interaction(conn, digest(raw))
