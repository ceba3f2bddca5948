from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from idp_mcp.store.tables import client_secrets, secret_reveals


def insert_secret(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(client_secrets).values(**values))


# Built once (client authentication runs it on every token request).
_FOR_CLIENT = (
    select(client_secrets)
    .where(client_secrets.c.tenant_id == bindparam("tenant"), client_secrets.c.client_id == bindparam("client"))
    .order_by(client_secrets.c.created_at.desc())
)


def for_client(conn: Connection, tenant_id: str, client_id: str) -> list[Any]:
    return list(conn.execute(_FOR_CLIENT, {"tenant": tenant_id, "client": client_id}).all())


def revoke(conn: Connection, tenant_id: str, client_id: str, kind: str, now: datetime) -> int:
    result = conn.execute(
        update(client_secrets)
        .where(
            client_secrets.c.tenant_id == tenant_id,
            client_secrets.c.client_id == client_id,
            client_secrets.c.kind == kind,
            client_secrets.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount)


def get_one(conn: Connection, tenant_id: str, client_id: str, secret_id: str) -> Any:
    """One secret of this application (None for another application's or another tenant's), locked for the update
    that follows on PostgreSQL."""
    return conn.execute(
        select(client_secrets)
        .where(
            client_secrets.c.tenant_id == tenant_id,
            client_secrets.c.client_id == client_id,
            client_secrets.c.id == secret_id,
        )
        .with_for_update()
    ).first()


def revoke_one(conn: Connection, tenant_id: str, client_id: str, secret_id: str, now: datetime) -> bool:
    result = conn.execute(
        update(client_secrets)
        .where(
            client_secrets.c.tenant_id == tenant_id,
            client_secrets.c.client_id == client_id,
            client_secrets.c.id == secret_id,
            client_secrets.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount) == 1


def insert_reveal(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(secret_reveals).values(**values))


def take_reveal(conn: Connection, tenant_id: str, client_id: str, secret_id: str, session_digest: str) -> Any:
    """The waiting reveal of this secret for this session, deleted in the same transaction (it is shown once)."""
    condition = (
        (secret_reveals.c.secret_id == secret_id)
        & (secret_reveals.c.tenant_id == tenant_id)
        & (secret_reveals.c.client_id == client_id)
        & (secret_reveals.c.session_digest == session_digest)
    )
    row = conn.execute(select(secret_reveals).where(condition).with_for_update()).first()
    if row is not None:
        conn.execute(delete(secret_reveals).where(condition))
    return row


def purge_reveals(conn: Connection, now: datetime) -> None:
    conn.execute(delete(secret_reveals).where(secret_reveals.c.expires_at <= now))
