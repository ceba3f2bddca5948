from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from idp_mcp.store.tables import sign_in_experiences


def get(conn: Connection, tenant_id: str, *, for_update: bool = False) -> Any:
    statement = select(sign_in_experiences).where(sign_in_experiences.c.tenant_id == tenant_id)
    # Read-modify-write: on PostgreSQL the row stays locked until the transaction ends (see clients.get).
    return conn.execute(statement.with_for_update() if for_update else statement).first()


def stamp(conn: Connection, tenant_id: str) -> tuple[int, datetime] | None:
    """The stored version and its time, without the document: what a cached copy is checked against."""
    row = conn.execute(
        select(sign_in_experiences.c.version, sign_in_experiences.c.updated_at).where(
            sign_in_experiences.c.tenant_id == tenant_id
        )
    ).first()
    return (int(row.version), row.updated_at) if row else None


def insert_first(conn: Connection, tenant_id: str, document: dict[str, Any], now: datetime) -> None:
    conn.execute(insert(sign_in_experiences).values(tenant_id=tenant_id, version=1, document=document, updated_at=now))


def replace(conn: Connection, tenant_id: str, expected_version: int, document: dict[str, Any], now: datetime) -> bool:
    """Write the next version only if nobody wrote since ``expected_version`` was read; False otherwise."""
    result = conn.execute(
        update(sign_in_experiences)
        .where(sign_in_experiences.c.tenant_id == tenant_id, sign_in_experiences.c.version == expected_version)
        .values(version=expected_version + 1, document=document, updated_at=now)
    )
    return int(result.rowcount) == 1
