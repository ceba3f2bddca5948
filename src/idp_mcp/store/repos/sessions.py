"""Browser sessions and pending authorization interactions, both found by the digest of a random id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from idp_mcp.store.tables import interactions, web_sessions


def insert_session(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(web_sessions).values(**values))


def get_session(conn: Connection, id_digest: str, now: datetime) -> Any:
    return conn.execute(
        select(web_sessions).where(web_sessions.c.id_digest == id_digest, web_sessions.c.expires_at > now)
    ).first()


def delete_session(conn: Connection, id_digest: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.id_digest == id_digest))


def insert_interaction(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(interactions).values(**values))


def get_interaction(conn: Connection, id_digest: str, now: datetime) -> Any:
    return conn.execute(
        select(interactions).where(interactions.c.id_digest == id_digest, interactions.c.expires_at > now)
    ).first()


def delete_interaction(conn: Connection, id_digest: str) -> bool:
    return conn.execute(delete(interactions).where(interactions.c.id_digest == id_digest)).rowcount == 1


def purge_expired(conn: Connection, now: datetime) -> None:
    conn.execute(delete(interactions).where(interactions.c.expires_at <= now))
    conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))


def update_interaction(conn: Connection, id_digest: str, params: dict[str, Any]) -> None:
    conn.execute(update(interactions).where(interactions.c.id_digest == id_digest).values(params=params))


def delete_user_sessions(conn: Connection, tenant_id: str, user_id: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.tenant_id == tenant_id, web_sessions.c.user_id == user_id))
