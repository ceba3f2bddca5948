from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from idp_mcp.store.tables import server_secrets


def get(conn: Connection, name: str) -> str | None:
    return conn.execute(select(server_secrets.c.value).where(server_secrets.c.name == name)).scalar_one_or_none()


def insert_secret(conn: Connection, name: str, value: str, now: datetime) -> None:
    conn.execute(insert(server_secrets).values(name=name, value=value, created_at=now))


def values_named_like(conn: Connection, prefix: str) -> list[str]:
    """The values of every secret whose name starts with ``prefix``."""
    rows = conn.execute(select(server_secrets.c.value).where(server_secrets.c.name.startswith(prefix, autoescape=True)))
    return [str(value) for value in rows.scalars()]


def delete_named_like(conn: Connection, prefix: str) -> None:
    conn.execute(delete(server_secrets).where(server_secrets.c.name.startswith(prefix, autoescape=True)))
