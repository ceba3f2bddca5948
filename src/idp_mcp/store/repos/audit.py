from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from idp_mcp.domain import AuditEntry
from idp_mcp.store.tables import audit_log


def insert_entry(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(audit_log).values(**values))


def insert_entries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert many rows in one statement execution (executemany)."""
    conn.execute(insert(audit_log), rows)


def recent(conn: Connection, tenant_id: str, limit: int = 50) -> list[AuditEntry]:
    rows = conn.execute(
        select(audit_log)
        .where(audit_log.c.tenant_id == tenant_id)
        # By time first: a queued row (a read tool's call) may be inserted after rows of a later change.
        .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        .limit(limit)
    ).all()
    return [
        AuditEntry(
            id=row.id,
            at=row.at,
            tenant_id=row.tenant_id,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            actor_sub=row.actor_sub,
            actor_client_id=row.actor_client_id,
            actor_client_name=row.actor_client_name,
            outcome=row.outcome,
            details=dict(row.details or {}),
        )
        for row in rows
    ]
