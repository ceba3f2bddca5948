from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update

from idp_mcp.domain import User
from idp_mcp.store.tables import users


def to_user(row: Any) -> User:
    return User(
        tenant_id=row.tenant_id,
        id=row.id,
        username=row.username,
        email=row.email,
        name=row.name,
        suspended=bool(row.suspended),
        created_at=row.created_at,
        email_verified=bool(row.email_verified),
    )


def insert_user(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(users).values(**values))


# Built once (userinfo, the MCP tool context and every sign-in run them): building a statement costs ~4x executing it.
_GET = select(users).where(users.c.tenant_id == bindparam("tenant"), users.c.id == bindparam("user"))
_BY_IDENTIFIER = select(users).where(
    users.c.tenant_id == bindparam("tenant"),
    or_(users.c.email == bindparam("email"), users.c.username == bindparam("username")),
)


_GET_FOR_UPDATE = _GET.with_for_update()  # read-modify-write: see clients.get


def get(conn: Connection, tenant_id: str, user_id: str, *, for_update: bool = False) -> User | None:
    row = conn.execute(_GET_FOR_UPDATE if for_update else _GET, {"tenant": tenant_id, "user": user_id}).first()
    return to_user(row) if row else None


def find_by_identifier(conn: Connection, tenant_id: str, identifier: str) -> tuple[User, str | None] | None:
    """A user whose email (case-insensitive) or username matches, with their password hash."""
    stripped = identifier.strip()
    row = conn.execute(_BY_IDENTIFIER, {"tenant": tenant_id, "email": stripped.lower(), "username": stripped}).first()
    return (to_user(row), row.password_hash) if row else None


def count(conn: Connection, tenant_id: str) -> int:
    return int(conn.execute(select(func.count()).select_from(users).where(users.c.tenant_id == tenant_id)).scalar_one())


def touch_sign_in(conn: Connection, tenant_id: str, user_id: str, now: datetime) -> None:
    conn.execute(update(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id).values(last_sign_in_at=now))


def search(conn: Connection, tenant_id: str, query: str | None, offset: int, limit: int) -> tuple[list[User], int]:
    condition = users.c.tenant_id == tenant_id
    if query:
        pattern = f"%{query.lower().replace('%', '').replace('_', '')}%"
        condition = condition & or_(
            func.lower(users.c.email).like(pattern),
            func.lower(users.c.username).like(pattern),
            func.lower(users.c.name).like(pattern),
        )
    total = int(conn.execute(select(func.count()).select_from(users).where(condition)).scalar_one())
    rows = conn.execute(
        select(users).where(condition).order_by(users.c.created_at, users.c.id).offset(offset).limit(limit)
    ).all()
    return [to_user(row) for row in rows], total


def update_user(conn: Connection, tenant_id: str, user_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id).values(**values))


def delete_user(conn: Connection, tenant_id: str, user_id: str) -> None:
    conn.execute(delete(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id))


def exists_identifier(conn: Connection, tenant_id: str, *, email: str | None, username: str | None) -> bool:
    return holder_of(conn, tenant_id, email=email, username=username) is not None


def holder_of(conn: Connection, tenant_id: str, *, email: str | None, username: str | None) -> str | None:
    """The id of the user who has this email or this username already, if any."""
    clauses = []
    if email:
        clauses.append(users.c.email == email)
    if username:
        clauses.append(users.c.username == username)
    if not clauses:
        return None
    row = conn.execute(select(users.c.id).where(users.c.tenant_id == tenant_id, or_(*clauses))).first()
    return str(row.id) if row else None
