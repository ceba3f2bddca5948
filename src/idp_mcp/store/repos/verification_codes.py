from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from idp_mcp.store.tables import verification_codes as codes


def insert_code(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(codes).values(**values))


def count_sent_since(conn: Connection, tenant_id: str, identifier: str, since: datetime) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(codes)
            .where(codes.c.tenant_id == tenant_id, codes.c.identifier == identifier, codes.c.created_at > since)
        ).scalar_one()
    )


def latest(conn: Connection, tenant_id: str, purpose: str, identifier: str) -> Any:
    """The most recent code sent to ``identifier`` for ``purpose``, used or not (the open one, on a tie)."""
    return conn.execute(
        select(codes)
        .where(codes.c.tenant_id == tenant_id, codes.c.purpose == purpose, codes.c.identifier == identifier)
        .order_by(codes.c.created_at.desc(), codes.c.consumed_at.is_(None).desc(), codes.c.id)
        .limit(1)
    ).first()


def retire_open(conn: Connection, tenant_id: str, purpose: str, identifier: str, now: datetime) -> None:
    """A new code replaces the earlier ones: they stop working."""
    conn.execute(
        update(codes)
        .where(
            codes.c.tenant_id == tenant_id,
            codes.c.purpose == purpose,
            codes.c.identifier == identifier,
            codes.c.consumed_at.is_(None),
        )
        .values(consumed_at=now)
    )


def count_attempt(conn: Connection, code_id: str, maximum: int) -> bool:
    """Add one wrong attempt; False when the code had used all its attempts already."""
    result = conn.execute(
        update(codes).where(codes.c.id == code_id, codes.c.attempts < maximum).values(attempts=codes.c.attempts + 1)
    )
    return int(result.rowcount) == 1


def consume(conn: Connection, code_id: str, now: datetime) -> bool:
    """Mark the code used; False when it was used (or replaced) already, so a code works once even under a race."""
    result = conn.execute(
        update(codes).where(codes.c.id == code_id, codes.c.consumed_at.is_(None)).values(consumed_at=now)
    )
    return int(result.rowcount) == 1


def purge_before(conn: Connection, before: datetime) -> None:
    conn.execute(delete(codes).where(codes.c.created_at < before))
