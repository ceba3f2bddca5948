from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

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


def published(conn: Connection, tenant_id: str) -> list[Any]:
    """The published (unretired) keys of one tenant, private keys included."""
    return list(
        conn.execute(
            select(signing_keys).where(signing_keys.c.tenant_id == tenant_id, signing_keys.c.retired_at.is_(None))
        ).all()
    )


def all_keys(conn: Connection, tenant_id: str | None = None) -> list[Any]:
    """Every key, retired ones included, without the private key; of one tenant when ``tenant_id`` is given."""
    columns = [signing_keys.c[name] for name in ("kid", "tenant_id", "alg", "created_at", "retired_at")]
    query = select(*columns).order_by(signing_keys.c.tenant_id, signing_keys.c.created_at, signing_keys.c.kid)
    if tenant_id is not None:
        query = query.where(signing_keys.c.tenant_id == tenant_id)
    return list(conn.execute(query).all())


def insert_key(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(signing_keys).values(**values))


def retire(conn: Connection, kid: str, at: datetime) -> None:
    conn.execute(
        update(signing_keys).where(signing_keys.c.kid == kid, signing_keys.c.retired_at.is_(None)).values(retired_at=at)
    )
