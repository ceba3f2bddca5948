"""Rate-limit counters: created without racing, locked in key order, then saved or forgotten."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import sqlite

from idp_mcp.store.tables import rate_limit_counters as counters


def _insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        # Imported here: on SQLite nothing else loads the PostgreSQL dialect (~15 ms and ~2 MB at start-up).
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(counters)
    return sqlite.insert(counters)


def lock(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The counters of ``rows`` (each a full row: key_digest, tenant_id, purpose, hits, window_start, expires_at),
    created with those values where missing, and locked until the transaction ends.

    Keys are taken in sorted order so two transactions limiting the same keys cannot deadlock. SQLite has no row
    locks; there the transaction already holds the database's write lock (BEGIN IMMEDIATE).
    """
    ordered = sorted(rows, key=lambda row: str(row["key_digest"]))
    for row in ordered:
        conn.execute(_insert(conn).values(**row).on_conflict_do_nothing(index_elements=["key_digest"]))
    digests = [row["key_digest"] for row in ordered]
    found = conn.execute(
        select(counters).where(counters.c.key_digest.in_(digests)).order_by(counters.c.key_digest).with_for_update()
    ).all()
    return {row.key_digest: row for row in found}


def save(conn: Connection, row: dict[str, Any]) -> None:
    """Write a counter's new values (inserting it again if a purge removed it meanwhile)."""
    values = {name: row[name] for name in ("hits", "window_start", "expires_at")}
    conn.execute(_insert(conn).values(**row).on_conflict_do_update(index_elements=["key_digest"], set_=values))


def forget(conn: Connection, key_digest: str) -> None:
    conn.execute(delete(counters).where(counters.c.key_digest == key_digest))


def give_back(conn: Connection, key_digest: str) -> None:
    """One hit fewer (never below zero)."""
    conn.execute(
        update(counters)
        .where(counters.c.key_digest == key_digest, counters.c.hits > 0)
        .values(hits=counters.c.hits - 1)
    )


def purge(conn: Connection, before: datetime) -> int:
    """Delete counters whose window ended before ``before``; how many went."""
    return int(conn.execute(delete(counters).where(counters.c.expires_at < before)).rowcount or 0)
