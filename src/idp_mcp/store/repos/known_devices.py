"""Browsers a user signed in from, by the digest of (tenant, user, device cookie)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.dialects import sqlite

from idp_mcp.store.tables import known_devices

_KNOWN = select(known_devices.c.key_digest).where(
    known_devices.c.key_digest == bindparam("digest"),
    known_devices.c.tenant_id == bindparam("tenant"),
    known_devices.c.user_id == bindparam("user"),
    known_devices.c.expires_at > bindparam("now"),
)


def _insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # only loaded where it is the dialect in use

        return postgresql.insert(known_devices)
    return sqlite.insert(known_devices)


def is_known(conn: Connection, key_digest: str, tenant_id: str, user_id: str, now: datetime) -> bool:
    row = conn.execute(_KNOWN, {"digest": key_digest, "tenant": tenant_id, "user": user_id, "now": now}).first()
    return row is not None


def remember(
    conn: Connection, key_digest: str, tenant_id: str, user_id: str, now: datetime, expires_at: datetime
) -> None:
    """Record the device, or move its last-seen time and expiry on (two sign-ins at once cannot collide)."""
    values = {"last_seen_at": now, "expires_at": expires_at}
    conn.execute(
        _insert(conn)
        .values(key_digest=key_digest, tenant_id=tenant_id, user_id=user_id, **values)
        .on_conflict_do_update(index_elements=["key_digest"], set_=values)
    )


def purge(conn: Connection, before: datetime) -> None:
    conn.execute(delete(known_devices).where(known_devices.c.expires_at <= before))
