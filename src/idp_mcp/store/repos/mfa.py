"""Second factors, backup codes and sign-ins waiting for their second factor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update

from idp_mcp.store.tables import mfa_backup_codes, mfa_factors, mfa_pending


def factors(conn: Connection, tenant_id: str, user_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(mfa_factors)
            .where(mfa_factors.c.tenant_id == tenant_id, mfa_factors.c.user_id == user_id)
            .order_by(mfa_factors.c.created_at)
        )
    )


def insert_factor(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(mfa_factors).values(**values))


def delete_unconfirmed(conn: Connection, tenant_id: str, user_id: str, kind: str) -> None:
    conn.execute(
        delete(mfa_factors).where(
            mfa_factors.c.tenant_id == tenant_id,
            mfa_factors.c.user_id == user_id,
            mfa_factors.c.kind == kind,
            mfa_factors.c.confirmed_at.is_(None),
        )
    )


def use_step(
    conn: Connection, tenant_id: str, factor_id: str, step: int, now: datetime, *, confirm: bool = False
) -> bool:
    """Record ``step`` as the factor's last accepted time step, only if it is later than the last one (atomic: of
    two concurrent uses of one code, one wins)."""
    values: dict[str, Any] = {"last_step": step, "last_used_at": now}
    if confirm:
        values["confirmed_at"] = now
    result = conn.execute(
        update(mfa_factors)
        .where(
            mfa_factors.c.tenant_id == tenant_id,
            mfa_factors.c.id == factor_id,
            or_(mfa_factors.c.last_step.is_(None), mfa_factors.c.last_step < step),
        )
        .values(**values)
    )
    return result.rowcount == 1


def delete_factors(conn: Connection, tenant_id: str, user_id: str) -> int:
    result = conn.execute(
        delete(mfa_factors).where(mfa_factors.c.tenant_id == tenant_id, mfa_factors.c.user_id == user_id)
    )
    return int(result.rowcount or 0)


def replace_backup_codes(conn: Connection, tenant_id: str, user_id: str, digests: list[str], now: datetime) -> None:
    delete_backup_codes(conn, tenant_id, user_id)
    conn.execute(
        insert(mfa_backup_codes),
        [
            {"tenant_id": tenant_id, "user_id": user_id, "digest": code_digest, "created_at": now, "used_at": None}
            for code_digest in digests
        ],
    )


def delete_backup_codes(conn: Connection, tenant_id: str, user_id: str) -> int:
    result = conn.execute(
        delete(mfa_backup_codes).where(mfa_backup_codes.c.tenant_id == tenant_id, mfa_backup_codes.c.user_id == user_id)
    )
    return int(result.rowcount or 0)


def backup_codes(conn: Connection, tenant_id: str, user_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(mfa_backup_codes).where(
                mfa_backup_codes.c.tenant_id == tenant_id, mfa_backup_codes.c.user_id == user_id
            )
        )
    )


def use_backup_code(conn: Connection, tenant_id: str, user_id: str, code_digest: str, now: datetime) -> bool:
    """Spend an unused backup code; False when there is none with this digest (or it was used)."""
    result = conn.execute(
        update(mfa_backup_codes)
        .where(
            mfa_backup_codes.c.tenant_id == tenant_id,
            mfa_backup_codes.c.user_id == user_id,
            mfa_backup_codes.c.digest == code_digest,
            mfa_backup_codes.c.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return result.rowcount == 1


def insert_pending(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(mfa_pending).values(**values))


def get_pending(conn: Connection, id_digest: str, now: datetime) -> Any:
    return conn.execute(
        select(mfa_pending).where(mfa_pending.c.id_digest == id_digest, mfa_pending.c.expires_at > now)
    ).first()


def count_pending_failure(conn: Connection, id_digest: str) -> None:
    conn.execute(
        update(mfa_pending).where(mfa_pending.c.id_digest == id_digest).values(failures=mfa_pending.c.failures + 1)
    )


def delete_pending(conn: Connection, id_digest: str) -> bool:
    return conn.execute(delete(mfa_pending).where(mfa_pending.c.id_digest == id_digest)).rowcount == 1


def delete_user_pending(conn: Connection, tenant_id: str, user_id: str) -> None:
    conn.execute(delete(mfa_pending).where(mfa_pending.c.tenant_id == tenant_id, mfa_pending.c.user_id == user_id))


def purge_pending(conn: Connection, now: datetime) -> None:
    conn.execute(delete(mfa_pending).where(mfa_pending.c.expires_at <= now))
