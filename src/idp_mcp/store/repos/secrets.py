from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from idp_mcp.store.tables import client_secrets


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
