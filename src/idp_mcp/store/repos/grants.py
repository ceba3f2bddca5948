"""Consents, authorization codes, refresh tokens and token families."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Table, and_, bindparam, delete, insert, select, update

from idp_mcp.domain import User
from idp_mcp.store.tables import authorization_codes, grants, refresh_tokens, revoked_families, users

# The token endpoint's statements are built once: building a statement costs ~4x executing a cached one.
_GET_CODE = select(authorization_codes).where(
    authorization_codes.c.tenant_id == bindparam("tenant"), authorization_codes.c.code_digest == bindparam("digest")
)
# A code or refresh token with its user (for the ID token, and to refuse a suspended user): one statement.
_USER_COLUMNS = (
    users.c.id.label("user__id"),
    users.c.username.label("user__username"),
    users.c.email.label("user__email"),
    users.c.name.label("user__name"),
    users.c.suspended.label("user__suspended"),
    users.c.created_at.label("user__created_at"),
    users.c.email_verified.label("user__email_verified"),
)


def _with_user(table: Table, digest_column: str) -> Select[Any]:
    """The row of ``table`` with this tenant and digest, joined to its user's columns (None when the user is gone)."""
    joined = table.outerjoin(users, and_(users.c.tenant_id == table.c.tenant_id, users.c.id == table.c.user_id))
    return (
        select(table, *_USER_COLUMNS)
        .select_from(joined)
        .where(table.c.tenant_id == bindparam("tenant"), table.c[digest_column] == bindparam("digest"))
    )


_GET_CODE_WITH_USER = _with_user(authorization_codes, "code_digest")
_CONSUME_CODE = (
    update(authorization_codes)
    .where(
        authorization_codes.c.tenant_id == bindparam("tenant"),
        authorization_codes.c.code_digest == bindparam("digest"),
        authorization_codes.c.consumed_at.is_(None),
    )
    .values(consumed_at=bindparam("now"))
)
_INSERT_REFRESH_TOKEN = insert(refresh_tokens)
_GET_REFRESH_TOKEN = select(refresh_tokens).where(
    refresh_tokens.c.tenant_id == bindparam("tenant"), refresh_tokens.c.token_digest == bindparam("digest")
)
# With its family's revocation too: a successor stored by a rotation that raced with a revocation of the whole
# family (a user suspended) has no revoked_at of its own, but its family is revoked.
_GET_REFRESH_TOKEN_WITH_USER = (
    _with_user(refresh_tokens, "token_digest")
    .outerjoin(revoked_families, revoked_families.c.family_id == refresh_tokens.c.family_id)
    .add_columns(revoked_families.c.family_id.label("family_revoked"))
)
_ROTATE_REFRESH_TOKEN = (
    update(refresh_tokens)
    .where(
        refresh_tokens.c.tenant_id == bindparam("tenant"),
        refresh_tokens.c.token_digest == bindparam("digest"),
        refresh_tokens.c.rotated_at.is_(None),
        refresh_tokens.c.revoked_at.is_(None),
    )
    .values(rotated_at=bindparam("now"))
)
_IS_FAMILY_REVOKED = select(revoked_families.c.family_id).where(revoked_families.c.family_id == bindparam("family"))


def insert_grant(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(grants).values(**values))


def any_grant(conn: Connection, tenant_id: str, client_id: str) -> bool:
    row = conn.execute(
        select(grants.c.id)
        .where(grants.c.tenant_id == tenant_id, grants.c.client_id == client_id, grants.c.revoked_at.is_(None))
        .limit(1)
    ).first()
    return row is not None


def latest_grant(conn: Connection, tenant_id: str, user_id: str, client_id: str) -> Any:
    return conn.execute(
        select(grants)
        .where(
            grants.c.tenant_id == tenant_id,
            grants.c.user_id == user_id,
            grants.c.client_id == client_id,
            grants.c.revoked_at.is_(None),
        )
        .order_by(grants.c.created_at.desc())
        .limit(1)
    ).first()


def insert_code(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(authorization_codes).values(**values))


def get_code(conn: Connection, tenant_id: str, code_digest: str) -> Any:
    return conn.execute(_GET_CODE, {"tenant": tenant_id, "digest": code_digest}).first()


def get_code_with_user(conn: Connection, tenant_id: str, code_digest: str) -> tuple[Any, User | None] | None:
    """A code's row and its user (None when the user is gone), in one statement."""
    row = conn.execute(_GET_CODE_WITH_USER, {"tenant": tenant_id, "digest": code_digest}).first()
    return None if row is None else (row, _user_of(row))


def consume_code(conn: Connection, tenant_id: str, code_digest: str, now: datetime) -> bool:
    """Mark a code used; False when it was already used (a replay). Atomic under concurrency."""
    result = conn.execute(_CONSUME_CODE, {"tenant": tenant_id, "digest": code_digest, "now": now})
    return result.rowcount == 1


def insert_refresh_token(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(_INSERT_REFRESH_TOKEN, values)


def get_refresh_token(conn: Connection, tenant_id: str, token_digest: str) -> Any:
    return conn.execute(_GET_REFRESH_TOKEN, {"tenant": tenant_id, "digest": token_digest}).first()


def get_refresh_token_with_user(conn: Connection, tenant_id: str, token_digest: str) -> tuple[Any, User | None] | None:
    """A refresh token's row and its user (None when the user is gone), in one statement; the row's
    ``family_revoked`` is not None when its whole family was revoked."""
    row = conn.execute(_GET_REFRESH_TOKEN_WITH_USER, {"tenant": tenant_id, "digest": token_digest}).first()
    return None if row is None else (row, _user_of(row))


def _user_of(row: Any) -> User | None:
    if row.user__id is None:
        return None
    return User(
        tenant_id=row.tenant_id,
        id=row.user__id,
        username=row.user__username,
        email=row.user__email,
        name=row.user__name,
        suspended=bool(row.user__suspended),
        created_at=row.user__created_at,
        email_verified=bool(row.user__email_verified),
    )


def rotate_refresh_token(conn: Connection, tenant_id: str, token_digest: str, now: datetime) -> bool:
    """Mark a refresh token rotated; False when it was already rotated or revoked (a reuse)."""
    result = conn.execute(_ROTATE_REFRESH_TOKEN, {"tenant": tenant_id, "digest": token_digest, "now": now})
    return result.rowcount == 1


def revoke_family(conn: Connection, tenant_id: str, family_id: str, now: datetime, reason: str) -> None:
    """Revoke every refresh token of a family and refuse its access tokens from now on."""
    conn.execute(
        update(refresh_tokens)
        .where(
            and_(
                refresh_tokens.c.tenant_id == tenant_id,
                refresh_tokens.c.family_id == family_id,
                refresh_tokens.c.revoked_at.is_(None),
            )
        )
        .values(revoked_at=now)
    )
    exists = conn.execute(select(revoked_families.c.family_id).where(revoked_families.c.family_id == family_id)).first()
    if not exists:
        conn.execute(
            insert(revoked_families).values(family_id=family_id, tenant_id=tenant_id, revoked_at=now, reason=reason)
        )


def is_family_revoked(conn: Connection, family_id: str) -> bool:
    return conn.execute(_IS_FAMILY_REVOKED, {"family": family_id}).first() is not None


def revoke_client_families(conn: Connection, tenant_id: str, client_id: str, now: datetime) -> None:
    """End every grant of a client (it is being deleted): its refresh tokens and its access tokens."""
    families = {
        row.family_id
        for row in conn.execute(
            select(refresh_tokens.c.family_id).where(
                refresh_tokens.c.tenant_id == tenant_id, refresh_tokens.c.client_id == client_id
            )
        ).all()
    }
    families |= {
        row.grant_id
        for row in conn.execute(
            select(authorization_codes.c.grant_id).where(
                authorization_codes.c.tenant_id == tenant_id, authorization_codes.c.client_id == client_id
            )
        ).all()
    }
    for family_id in families:
        revoke_family(conn, tenant_id, family_id, now, "client_deleted")


def revoke_user_grants(conn: Connection, tenant_id: str, user_id: str, now: datetime, reason: str) -> list[str]:
    """End everything a user holds at this issuer (suspended or deleted): every grant (consent) and token family,
    their refresh tokens and access tokens, and the codes not yet exchanged. Returns the families newly revoked."""
    families = {
        row.id
        for row in conn.execute(select(grants.c.id).where(grants.c.tenant_id == tenant_id, grants.c.user_id == user_id))
    }
    families |= {
        row.family_id
        for row in conn.execute(
            select(refresh_tokens.c.family_id).where(
                refresh_tokens.c.tenant_id == tenant_id, refresh_tokens.c.user_id == user_id
            )
        )
    }
    families |= {
        row.grant_id
        for row in conn.execute(
            select(authorization_codes.c.grant_id).where(
                authorization_codes.c.tenant_id == tenant_id, authorization_codes.c.user_id == user_id
            )
        )
    }
    conn.execute(
        update(grants)
        .where(grants.c.tenant_id == tenant_id, grants.c.user_id == user_id, grants.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    conn.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.tenant_id == tenant_id,
            refresh_tokens.c.user_id == user_id,
            refresh_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    # A code issued before the suspension must not be exchanged after a reactivation.
    conn.execute(
        delete(authorization_codes).where(
            authorization_codes.c.tenant_id == tenant_id,
            authorization_codes.c.user_id == user_id,
            authorization_codes.c.consumed_at.is_(None),
        )
    )
    already = {
        row.family_id
        for row in conn.execute(select(revoked_families.c.family_id).where(revoked_families.c.family_id.in_(families)))
    } if families else set()  # fmt: skip
    fresh = sorted(families - already)
    if fresh:
        conn.execute(
            insert(revoked_families),
            [{"family_id": family, "tenant_id": tenant_id, "revoked_at": now, "reason": reason} for family in fresh],
        )
    return fresh
