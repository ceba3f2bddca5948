"""Connectors, their encrypted secrets, users' upstream identities and pending upstream sign-ins. Every query is
scoped by ``tenant_id``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from idp_mcp.store.tables import connector_secrets, connectors, upstream_logins, user_identities

# --- connectors -------------------------------------------------------------------------------------------------


def insert_connector(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(connectors).values(**values))


def get(conn: Connection, tenant_id: str, connector_id: str) -> Any:
    return conn.execute(
        select(connectors).where(connectors.c.tenant_id == tenant_id, connectors.c.id == connector_id)
    ).first()


def list_for_tenant(conn: Connection, tenant_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(connectors).where(connectors.c.tenant_id == tenant_id).order_by(connectors.c.created_at)
        ).all()
    )


def update_connector(conn: Connection, tenant_id: str, connector_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(connectors).where(connectors.c.tenant_id == tenant_id, connectors.c.id == connector_id).values(**values)
    )


def delete_connector(conn: Connection, tenant_id: str, connector_id: str) -> None:
    # Explicit deletes (not only ON DELETE CASCADE): SQLite enforces foreign keys only with the PRAGMA set.
    conn.execute(
        delete(user_identities).where(
            user_identities.c.tenant_id == tenant_id, user_identities.c.connector_id == connector_id
        )
    )
    conn.execute(
        delete(connector_secrets).where(
            connector_secrets.c.tenant_id == tenant_id, connector_secrets.c.connector_id == connector_id
        )
    )
    conn.execute(delete(connectors).where(connectors.c.tenant_id == tenant_id, connectors.c.id == connector_id))


def secret_info(conn: Connection, tenant_id: str, connector_ids: list[str]) -> dict[str, Any]:
    """Last four characters and time of each connector's secret (never the ciphertext)."""
    if not connector_ids:
        return {}
    rows = conn.execute(
        select(connector_secrets.c.connector_id, connector_secrets.c.last_four, connector_secrets.c.updated_at).where(
            connector_secrets.c.tenant_id == tenant_id, connector_secrets.c.connector_id.in_(connector_ids)
        )
    ).all()
    return {row.connector_id: row for row in rows}


def get_ciphertext(conn: Connection, tenant_id: str, connector_id: str) -> str | None:
    return conn.execute(
        select(connector_secrets.c.ciphertext).where(
            connector_secrets.c.tenant_id == tenant_id, connector_secrets.c.connector_id == connector_id
        )
    ).scalar_one_or_none()


def put_secret(
    conn: Connection, tenant_id: str, connector_id: str, ciphertext: str, last_four: str, now: datetime
) -> bool:
    """Store the secret; True when it replaced one."""
    replaced = (
        conn.execute(
            update(connector_secrets)
            .where(connector_secrets.c.tenant_id == tenant_id, connector_secrets.c.connector_id == connector_id)
            .values(ciphertext=ciphertext, last_four=last_four, updated_at=now)
        ).rowcount
        == 1
    )
    if not replaced:
        conn.execute(
            insert(connector_secrets).values(
                tenant_id=tenant_id,
                connector_id=connector_id,
                ciphertext=ciphertext,
                last_four=last_four,
                updated_at=now,
            )
        )
    return replaced


# --- identities -------------------------------------------------------------------------------------------------


def find_identity(conn: Connection, tenant_id: str, connector_id: str, subject: str) -> Any:
    return conn.execute(
        select(user_identities).where(
            user_identities.c.tenant_id == tenant_id,
            user_identities.c.connector_id == connector_id,
            user_identities.c.subject == subject,
        )
    ).first()


def identities_of_user(conn: Connection, tenant_id: str, user_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(user_identities)
            .where(user_identities.c.tenant_id == tenant_id, user_identities.c.user_id == user_id)
            .order_by(user_identities.c.created_at)
        ).all()
    )


def insert_identity(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(user_identities).values(**values))


def update_identity(conn: Connection, tenant_id: str, connector_id: str, subject: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(user_identities)
        .where(
            user_identities.c.tenant_id == tenant_id,
            user_identities.c.connector_id == connector_id,
            user_identities.c.subject == subject,
        )
        .values(**values)
    )


def delete_identities(conn: Connection, tenant_id: str, user_id: str, connector_id: str) -> int:
    return int(
        conn.execute(
            delete(user_identities).where(
                user_identities.c.tenant_id == tenant_id,
                user_identities.c.user_id == user_id,
                user_identities.c.connector_id == connector_id,
            )
        ).rowcount
    )


def delete_user_identities(conn: Connection, tenant_id: str, user_id: str) -> None:
    conn.execute(
        delete(user_identities).where(user_identities.c.tenant_id == tenant_id, user_identities.c.user_id == user_id)
    )


def count_identities(conn: Connection, tenant_id: str, connector_id: str) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(user_identities)
            .where(user_identities.c.tenant_id == tenant_id, user_identities.c.connector_id == connector_id)
        ).scalar_one()
    )


# --- pending upstream sign-ins ------------------------------------------------------------------------------------


def insert_login(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(upstream_logins).values(**values))


def get_login(conn: Connection, state_digest: str) -> Any:
    return conn.execute(select(upstream_logins).where(upstream_logins.c.state_digest == state_digest)).first()


def consume_login(conn: Connection, state_digest: str, now: datetime) -> bool:
    """Mark the login used; False when it was used already (a replayed or concurrent callback)."""
    return (
        conn.execute(
            update(upstream_logins)
            .where(upstream_logins.c.state_digest == state_digest, upstream_logins.c.consumed_at.is_(None))
            .values(consumed_at=now)
        ).rowcount
        == 1
    )


def purge_logins(conn: Connection, before: datetime) -> None:
    conn.execute(delete(upstream_logins).where(upstream_logins.c.expires_at <= before))
