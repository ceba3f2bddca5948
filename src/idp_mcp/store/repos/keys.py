from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from idp_mcp.store.tables import signing_keys


def active_keys(conn: Connection, tenant_id: str) -> list[Any]:
    """Unretired keys of a tenant, newest first (the first one signs)."""
    return list(
        conn.execute(
            select(signing_keys)
            .where(signing_keys.c.tenant_id == tenant_id, signing_keys.c.retired_at.is_(None))
            .order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid)
        ).all()
    )


def all_published(conn: Connection) -> list[Any]:
    return list(conn.execute(select(signing_keys).where(signing_keys.c.retired_at.is_(None))).all())


def insert_key(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(signing_keys).values(**values))
