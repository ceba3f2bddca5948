"""Passkeys of users and the WebAuthn challenges waiting for an answer. Every query is scoped to one tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from idp_mcp.domain import as_utc
from idp_mcp.store.tables import passkeys, webauthn_challenges


def insert_passkey(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(passkeys).values(**values))


def for_user(conn: Connection, tenant_id: str, user_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(passkeys)
            .where(passkeys.c.tenant_id == tenant_id, passkeys.c.user_id == user_id)
            .order_by(passkeys.c.created_at, passkeys.c.id)
        )
    )


def by_credential(conn: Connection, tenant_id: str, credential_id: str, *, for_update: bool = False) -> Any:
    query = select(passkeys).where(passkeys.c.tenant_id == tenant_id, passkeys.c.credential_id == credential_id)
    return conn.execute(query.with_for_update() if for_update else query).first()


def credential_taken(conn: Connection, tenant_id: str, credential_id: str) -> bool:
    return by_credential(conn, tenant_id, credential_id) is not None


def record_use(
    conn: Connection, tenant_id: str, passkey_id: str, *, old_count: int, new_count: int, backed_up: bool,
    now: datetime,
) -> bool:  # fmt: skip
    """Move the sign count on; False when another sign-in moved it first (the count read is stale)."""
    result = conn.execute(
        update(passkeys)
        .where(passkeys.c.tenant_id == tenant_id, passkeys.c.id == passkey_id, passkeys.c.sign_count == old_count)
        .values(sign_count=new_count, backed_up=backed_up, last_used_at=now)
    )
    return int(result.rowcount) == 1


def delete_for_user(conn: Connection, tenant_id: str, user_id: str) -> int:
    result = conn.execute(delete(passkeys).where(passkeys.c.tenant_id == tenant_id, passkeys.c.user_id == user_id))
    return int(result.rowcount)


# --- challenges -----------------------------------------------------------------------------------------------------


def replace_challenge(conn: Connection, values: dict[str, Any]) -> None:
    """Store a new challenge for (tenant, purpose, interaction); earlier ones for the same stop working."""
    conn.execute(
        delete(webauthn_challenges).where(
            webauthn_challenges.c.tenant_id == values["tenant_id"],
            webauthn_challenges.c.purpose == values["purpose"],
            webauthn_challenges.c.interaction_digest == values["interaction_digest"],
        )
    )
    conn.execute(insert(webauthn_challenges).values(**values))


def take_challenge(conn: Connection, tenant_id: str, purpose: str, interaction_digest: str, now: datetime) -> Any:
    """The live challenge of (tenant, purpose, interaction), deleted as it is read: it answers once. Two answers at
    once: only the one whose delete removed the row gets it."""
    row = conn.execute(
        select(webauthn_challenges).where(
            webauthn_challenges.c.tenant_id == tenant_id,
            webauthn_challenges.c.purpose == purpose,
            webauthn_challenges.c.interaction_digest == interaction_digest,
        )
    ).first()
    if row is None:
        return None
    deleted = conn.execute(delete(webauthn_challenges).where(webauthn_challenges.c.id == row.id))
    if int(deleted.rowcount) != 1:
        return None
    return row if as_utc(row.expires_at) > now else None


def purge_challenges(conn: Connection, now: datetime) -> None:
    conn.execute(delete(webauthn_challenges).where(webauthn_challenges.c.expires_at <= now))
