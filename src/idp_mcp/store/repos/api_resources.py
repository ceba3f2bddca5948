"""API resources and their permissions. Every statement filters on the tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from idp_mcp.store.tables import api_permissions, api_resources, role_permissions, roles

_BY_IDENTIFIER = select(api_resources).where(
    api_resources.c.tenant_id == bindparam("tenant"), api_resources.c.identifier == bindparam("identifier")
)


def insert_resource(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(api_resources).values(**values))


def update_resource(conn: Connection, tenant_id: str, resource_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(api_resources)
        .where(api_resources.c.tenant_id == tenant_id, api_resources.c.id == resource_id)
        .values(**values)
    )


def delete_resource(conn: Connection, tenant_id: str, resource_id: str) -> None:
    # Role grants of its permissions go with the permissions (foreign keys cascade; deleted explicitly as well so the
    # outcome does not depend on SQLite's foreign_keys pragma).
    permission_ids = select(api_permissions.c.id).where(
        api_permissions.c.tenant_id == tenant_id, api_permissions.c.resource_id == resource_id
    )
    conn.execute(delete(role_permissions).where(role_permissions.c.permission_id.in_(permission_ids)))
    conn.execute(
        delete(api_permissions).where(
            api_permissions.c.tenant_id == tenant_id, api_permissions.c.resource_id == resource_id
        )
    )
    conn.execute(delete(api_resources).where(api_resources.c.tenant_id == tenant_id, api_resources.c.id == resource_id))


def get(conn: Connection, tenant_id: str, resource_id: str) -> Any:
    return conn.execute(
        select(api_resources).where(api_resources.c.tenant_id == tenant_id, api_resources.c.id == resource_id)
    ).first()


def by_identifier(conn: Connection, tenant_id: str, identifier: str) -> Any:
    return conn.execute(_BY_IDENTIFIER, {"tenant": tenant_id, "identifier": identifier}).first()


def by_identifiers(conn: Connection, tenant_id: str, identifiers: list[str]) -> list[Any]:
    if not identifiers:
        return []
    return list(
        conn.execute(
            select(api_resources).where(
                api_resources.c.tenant_id == tenant_id, api_resources.c.identifier.in_(identifiers)
            )
        ).all()
    )


def list_resources(conn: Connection, tenant_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(api_resources)
            .where(api_resources.c.tenant_id == tenant_id)
            .order_by(api_resources.c.created_at, api_resources.c.id)
        ).all()
    )


def count_resources(conn: Connection, tenant_id: str) -> int:
    query = select(func.count()).select_from(api_resources).where(api_resources.c.tenant_id == tenant_id)
    return int(conn.execute(query).scalar_one())


def permissions(conn: Connection, tenant_id: str, resource_ids: list[str]) -> list[Any]:
    """The permissions of these resources, in the order they were defined."""
    if not resource_ids:
        return []
    return list(
        conn.execute(
            select(api_permissions)
            .where(api_permissions.c.tenant_id == tenant_id, api_permissions.c.resource_id.in_(resource_ids))
            .order_by(api_permissions.c.created_at, api_permissions.c.name)
        ).all()
    )


def insert_permission(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(api_permissions).values(**values))


def update_permission_description(conn: Connection, tenant_id: str, permission_id: str, description: str) -> None:
    conn.execute(
        update(api_permissions)
        .where(api_permissions.c.tenant_id == tenant_id, api_permissions.c.id == permission_id)
        .values(description=description)
    )


def delete_permissions(conn: Connection, tenant_id: str, permission_ids: list[str]) -> None:
    if not permission_ids:
        return
    conn.execute(delete(role_permissions).where(role_permissions.c.permission_id.in_(permission_ids)))
    conn.execute(
        delete(api_permissions).where(
            api_permissions.c.tenant_id == tenant_id, api_permissions.c.id.in_(permission_ids)
        )
    )


def roles_granting(conn: Connection, tenant_id: str, permission_ids: list[str]) -> list[tuple[str, str, str]]:
    """(permission id, role id, role name) for every role that grants one of these permissions."""
    if not permission_ids:
        return []
    rows = conn.execute(
        select(role_permissions.c.permission_id, roles.c.id, roles.c.name)
        .join(roles, roles.c.id == role_permissions.c.role_id)
        .where(roles.c.tenant_id == tenant_id, role_permissions.c.permission_id.in_(permission_ids))
        .order_by(roles.c.name)
    ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def touch(conn: Connection, tenant_id: str, resource_id: str, now: datetime) -> None:
    update_resource(conn, tenant_id, resource_id, {"updated_at": now})
