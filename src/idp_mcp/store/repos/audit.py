from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, insert, or_, select

from idp_mcp.domain import ADMIN_TENANT_ID, AuditEntry
from idp_mcp.store.tables import audit_log, users


def insert_entry(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(audit_log).values(**values))


def insert_entries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert many rows in one statement execution (executemany)."""
    conn.execute(insert(audit_log), rows)


def recent(conn: Connection, tenant_id: str, limit: int = 50) -> list[AuditEntry]:
    return search(conn, tenant_id, limit=limit)


def search(
    conn: Connection,
    tenant_id: str,
    *,
    limit: int,
    since: datetime | None = None,
    actor_sub: str | None = None,
    actor_email: str | None = None,
    agent: str | None = None,
    action: str | None = None,
    target_id: str | None = None,
    before: int | None = None,
) -> list[AuditEntry]:
    """A tenant's rows, newest first, narrowed by every filter given. ``agent`` matches the client id or name;
    ``actor_email`` the email of the administrator (or tenant user) who acted; ``before`` an event id: only rows
    after it in this order (older, or as old with a smaller id), so pages never overlap or skip a row."""
    statement = select(audit_log).where(audit_log.c.tenant_id == tenant_id)
    if since is not None:
        statement = statement.where(audit_log.c.at >= since)
    if actor_sub is not None:
        statement = statement.where(audit_log.c.actor_sub == actor_sub)
    if actor_email is not None:
        subjects = select(users.c.id).where(
            users.c.tenant_id.in_((ADMIN_TENANT_ID, tenant_id)), users.c.email == actor_email
        )
        statement = statement.where(audit_log.c.actor_sub.in_(subjects.scalar_subquery()))
    if agent is not None:
        statement = statement.where(or_(audit_log.c.actor_client_id == agent, audit_log.c.actor_client_name == agent))
    if action is not None:
        statement = statement.where(audit_log.c.action == action)
    if target_id is not None:
        statement = statement.where(audit_log.c.target_id == target_id)
    if before is not None:
        cursor = conn.execute(
            select(audit_log.c.at).where(audit_log.c.tenant_id == tenant_id, audit_log.c.id == before)
        ).first()
        if cursor is None:
            return []
        statement = statement.where(
            or_(audit_log.c.at < cursor.at, and_(audit_log.c.at == cursor.at, audit_log.c.id < before))
        )
    # By time first: a queued row (a read tool's call) may be inserted after rows of a later change.
    rows = conn.execute(statement.order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit)).all()
    return [_entry(row) for row in rows]


def emails(conn: Connection, tenant_id: str, user_ids: list[str]) -> dict[str, str]:
    """The email of each of these users (administrators or the tenant's own) that has one."""
    if not user_ids:
        return {}
    rows = conn.execute(
        select(users.c.id, users.c.email).where(
            users.c.tenant_id.in_((ADMIN_TENANT_ID, tenant_id)), users.c.id.in_(user_ids), users.c.email.is_not(None)
        )
    ).all()
    return {row.id: row.email for row in rows}


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
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
