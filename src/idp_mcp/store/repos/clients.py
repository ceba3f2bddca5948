from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from idp_mcp.domain import Client
from idp_mcp.store.tables import clients


def to_client(row: Any) -> Client:
    return Client(
        tenant_id=row.tenant_id,
        client_id=row.client_id,
        origin=row.origin,
        name=row.name,
        client_uri=row.client_uri,
        logo_uri=row.logo_uri,
        redirect_uris=tuple(row.redirect_uris),
        grant_types=tuple(row.grant_types),
        response_types=tuple(row.response_types),
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        scope=row.scope,
        secret_digest=row.secret_digest,
        secret_expires_at=row.secret_expires_at,
        metadata=dict(row.metadata or {}),
        created_at=row.created_at,
    )


# Built once (the token endpoint runs it on every request): building a statement costs ~4x executing it.
_GET = select(clients).where(clients.c.tenant_id == bindparam("tenant"), clients.c.client_id == bindparam("client"))
# Read-modify-write: on PostgreSQL the row stays locked until the transaction ends, so a concurrent update waits and
# then reads this one's result (SQLite renders no FOR UPDATE: its write transactions are serial already).
_GET_FOR_UPDATE = _GET.with_for_update()


def get(conn: Connection, tenant_id: str, client_id: str, *, for_update: bool = False) -> Client | None:
    row = conn.execute(_GET_FOR_UPDATE if for_update else _GET, {"tenant": tenant_id, "client": client_id}).first()
    return to_client(row) if row else None


def upsert(conn: Connection, values: dict[str, Any]) -> None:
    """Insert, or replace a row with the same key (CIMD documents are re-fetched and re-stored). One statement
    (``INSERT ... ON CONFLICT DO UPDATE``), so concurrent stores of the same document cannot fail on each other's
    row, as a delete then insert did on PostgreSQL."""
    key = [clients.c.tenant_id, clients.c.client_id]
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg = postgresql.insert(clients).values(**values)
        conn.execute(pg.on_conflict_do_update(index_elements=key, set_=_replaced(values, pg.excluded)))
    else:
        from sqlalchemy.dialects import sqlite

        lite = sqlite.insert(clients).values(**values)
        conn.execute(lite.on_conflict_do_update(index_elements=key, set_=_replaced(values, lite.excluded)))


def _replaced(values: dict[str, Any], excluded: Any) -> dict[str, Any]:
    return {name: excluded[name] for name in values if name not in ("tenant_id", "client_id")}


def insert_client(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(clients).values(**values))


def list_applications(conn: Connection, tenant_id: str) -> list[Client]:
    rows = conn.execute(
        select(clients)
        .where(clients.c.tenant_id == tenant_id, clients.c.origin == "application")
        .order_by(clients.c.created_at, clients.c.client_id)
    ).all()
    return [to_client(row) for row in rows]


def update_client(conn: Connection, tenant_id: str, client_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(clients).where(clients.c.tenant_id == tenant_id, clients.c.client_id == client_id).values(**values)
    )


def delete_client(conn: Connection, tenant_id: str, client_id: str) -> None:
    conn.execute(delete(clients).where(clients.c.tenant_id == tenant_id, clients.c.client_id == client_id))
