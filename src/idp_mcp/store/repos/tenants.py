from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, select, update

from idp_mcp.domain import Tenant
from idp_mcp.store.tables import tenant_members, tenants


def _tenant(row: object) -> Tenant:
    return Tenant(id=row.id, name=row.name, created_at=row.created_at)  # type: ignore[attr-defined]


# Built once (getTenantInfo, hosted pages and every console page run them): building costs ~4x executing.
_GET = select(tenants).where(tenants.c.id == bindparam("tenant"))
_MEMBER_ROLE = select(tenant_members.c.role).where(
    tenant_members.c.tenant_id == bindparam("tenant"), tenant_members.c.admin_user_id == bindparam("admin")
)


_GET_FOR_UPDATE = _GET.with_for_update()  # read-modify-write: see clients.get


def get(conn: Connection, tenant_id: str, *, for_update: bool = False) -> Tenant | None:
    row = conn.execute(_GET_FOR_UPDATE if for_update else _GET, {"tenant": tenant_id}).first()
    return _tenant(row) if row else None


def create(conn: Connection, tenant_id: str, name: str, now: datetime) -> Tenant:
    conn.execute(insert(tenants).values(id=tenant_id, name=name, created_at=now))
    return Tenant(id=tenant_id, name=name, created_at=now)


def add_member(conn: Connection, tenant_id: str, admin_user_id: str, role: str, now: datetime) -> None:
    conn.execute(
        insert(tenant_members).values(tenant_id=tenant_id, admin_user_id=admin_user_id, role=role, created_at=now)
    )


def member_role(conn: Connection, tenant_id: str, admin_user_id: str) -> str | None:
    return conn.execute(_MEMBER_ROLE, {"tenant": tenant_id, "admin": admin_user_id}).scalar_one_or_none()


def memberships(conn: Connection, admin_user_id: str) -> list[tuple[Tenant, str]]:
    rows = conn.execute(
        select(tenants, tenant_members.c.role)
        .join(tenant_members, tenant_members.c.tenant_id == tenants.c.id)
        .where(tenant_members.c.admin_user_id == admin_user_id)
        .order_by(tenants.c.created_at, tenants.c.id)
    ).all()
    return [(_tenant(row), row.role) for row in rows]


def rename(conn: Connection, tenant_id: str, name: str) -> None:
    conn.execute(update(tenants).where(tenants.c.id == tenant_id).values(name=name))


def set_role(conn: Connection, tenant_id: str, admin_user_id: str, role: str) -> None:
    conn.execute(
        update(tenant_members)
        .where(tenant_members.c.tenant_id == tenant_id, tenant_members.c.admin_user_id == admin_user_id)
        .values(role=role)
    )


def count_role(conn: Connection, tenant_id: str, role: str) -> int:
    """How many members have ``role``; their rows stay locked until the transaction ends (PostgreSQL), so two
    demotions at once cannot both see the other owner."""
    rows = conn.execute(
        select(tenant_members.c.admin_user_id)
        .where(tenant_members.c.tenant_id == tenant_id, tenant_members.c.role == role)
        .with_for_update()
    ).all()
    return len(rows)
