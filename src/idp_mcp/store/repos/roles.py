"""Roles, the permissions they grant, and who holds them. Every statement filters on the tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, func, insert, select, update

from idp_mcp.store.tables import (
    api_permissions,
    api_resources,
    application_roles,
    clients,
    role_permissions,
    roles,
    user_roles,
    users,
)


def insert_role(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(roles).values(**values))


def update_role(conn: Connection, tenant_id: str, role_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(roles).where(roles.c.tenant_id == tenant_id, roles.c.id == role_id).values(**values))


def delete_role(conn: Connection, tenant_id: str, role_id: str) -> None:
    # Explicit, so the outcome does not depend on SQLite's foreign_keys pragma.
    for table in (role_permissions, user_roles, application_roles):
        conn.execute(delete(table).where(table.c.tenant_id == tenant_id, table.c.role_id == role_id))
    conn.execute(delete(roles).where(roles.c.tenant_id == tenant_id, roles.c.id == role_id))


def get(conn: Connection, tenant_id: str, role_id: str) -> Any:
    return conn.execute(select(roles).where(roles.c.tenant_id == tenant_id, roles.c.id == role_id)).first()


def by_ids(conn: Connection, tenant_id: str, role_ids: list[str]) -> list[Any]:
    if not role_ids:
        return []
    return list(conn.execute(select(roles).where(roles.c.tenant_id == tenant_id, roles.c.id.in_(role_ids))).all())


def by_name(conn: Connection, tenant_id: str, name: str) -> Any:
    return conn.execute(select(roles).where(roles.c.tenant_id == tenant_id, roles.c.name == name)).first()


def list_roles(conn: Connection, tenant_id: str) -> list[Any]:
    return list(
        conn.execute(select(roles).where(roles.c.tenant_id == tenant_id).order_by(roles.c.created_at, roles.c.id)).all()
    )


def grants(conn: Connection, tenant_id: str, role_ids: list[str]) -> list[Any]:
    """(role_id, permission_id, permission, description, resource identifier, resource name) of these roles."""
    if not role_ids:
        return []
    return list(
        conn.execute(
            select(
                role_permissions.c.role_id,
                api_permissions.c.id.label("permission_id"),
                api_permissions.c.name.label("permission"),
                api_permissions.c.description,
                api_resources.c.identifier.label("resource"),
                api_resources.c.name.label("resource_name"),
            )
            .join(api_permissions, api_permissions.c.id == role_permissions.c.permission_id)
            .join(api_resources, api_resources.c.id == api_permissions.c.resource_id)
            .where(role_permissions.c.tenant_id == tenant_id, role_permissions.c.role_id.in_(role_ids))
            .order_by(api_resources.c.identifier, api_permissions.c.name)
        ).all()
    )


def set_permissions(conn: Connection, tenant_id: str, role_id: str, permission_ids: list[str]) -> None:
    conn.execute(
        delete(role_permissions).where(role_permissions.c.tenant_id == tenant_id, role_permissions.c.role_id == role_id)
    )
    if permission_ids:
        conn.execute(
            insert(role_permissions),
            [{"role_id": role_id, "permission_id": pid, "tenant_id": tenant_id} for pid in permission_ids],
        )


def holders(conn: Connection, tenant_id: str, role_id: str, limit: int) -> tuple[list[Any], list[Any], int, int]:
    """Up to ``limit`` users and applications holding the role, and how many of each there are."""
    user_rows = conn.execute(
        select(users.c.id, users.c.email, users.c.username)
        .join(user_roles, (user_roles.c.tenant_id == users.c.tenant_id) & (user_roles.c.user_id == users.c.id))
        .where(user_roles.c.tenant_id == tenant_id, user_roles.c.role_id == role_id)
        .order_by(users.c.created_at, users.c.id)
        .limit(limit)
    ).all()
    app_rows = conn.execute(
        select(clients.c.client_id, clients.c.name)
        .join(
            application_roles,
            (application_roles.c.tenant_id == clients.c.tenant_id)
            & (application_roles.c.client_id == clients.c.client_id),
        )
        .where(application_roles.c.tenant_id == tenant_id, application_roles.c.role_id == role_id)
        .order_by(clients.c.created_at, clients.c.client_id)
        .limit(limit)
    ).all()
    user_count = conn.execute(
        select(func.count())
        .select_from(user_roles)
        .where(user_roles.c.tenant_id == tenant_id, user_roles.c.role_id == role_id)
    ).scalar_one()
    app_count = conn.execute(
        select(func.count())
        .select_from(application_roles)
        .where(application_roles.c.tenant_id == tenant_id, application_roles.c.role_id == role_id)
    ).scalar_one()
    return list(user_rows), list(app_rows), int(user_count), int(app_count)


# --- who holds which role ------------------------------------------------------------------------------------

_USER_ROLE_IDS = select(user_roles.c.role_id).where(
    user_roles.c.tenant_id == bindparam("tenant"), user_roles.c.user_id == bindparam("subject")
)
_APPLICATION_ROLE_IDS = select(application_roles.c.role_id).where(
    application_roles.c.tenant_id == bindparam("tenant"), application_roles.c.client_id == bindparam("subject")
)
# The ids of the permissions a user / an application holds through the tenant's roles (bind parameters :tenant and
# :subject), for the token endpoint's one statement below.
HELD_PERMISSION_IDS: dict[str, Select[Any]] = {
    "user": select(role_permissions.c.permission_id)
    .join(user_roles, user_roles.c.role_id == role_permissions.c.role_id)
    .where(user_roles.c.tenant_id == bindparam("tenant"), user_roles.c.user_id == bindparam("subject")),
    "application": select(role_permissions.c.permission_id)
    .join(application_roles, application_roles.c.role_id == role_permissions.c.role_id)
    .where(application_roles.c.tenant_id == bindparam("tenant"), application_roles.c.client_id == bindparam("subject")),
}


def _evaluation(held_ids: Select[Any]) -> Select[Any]:
    """One API resource by identifier, each of its permissions, and whether ``held_ids`` holds it."""
    return (
        select(
            api_resources.c.identifier,
            api_resources.c.access_token_ttl,
            api_permissions.c.name,
            api_permissions.c.id.in_(held_ids.scalar_subquery()).label("held"),
        )
        .select_from(api_resources.outerjoin(api_permissions, api_permissions.c.resource_id == api_resources.c.id))
        .where(api_resources.c.tenant_id == bindparam("tenant"), api_resources.c.identifier == bindparam("identifier"))
    )


# Built once per source of roles (building a statement costs several times running it).
_EVALUATIONS: dict[int, tuple[Select[Any], Select[Any]]] = {}


def role_ids_of(conn: Connection, tenant_id: str, kind: str, subject_id: str) -> list[str]:
    statement = _USER_ROLE_IDS if kind == "user" else _APPLICATION_ROLE_IDS
    return [row[0] for row in conn.execute(statement, {"tenant": tenant_id, "subject": subject_id}).all()]


def evaluate(conn: Connection, tenant_id: str, identifier: str, subject_id: str, held_ids: Select[Any]) -> list[Any]:
    """(identifier, access_token_ttl, permission name or None, held) rows of one resource, in one statement; no
    rows when the tenant has no resource with this identifier."""
    cached = _EVALUATIONS.get(id(held_ids))
    if cached is None or cached[0] is not held_ids:
        cached = (held_ids, _evaluation(held_ids))
        if len(_EVALUATIONS) < 64:  # the tenant's two, and a few sources to come; never unbounded
            _EVALUATIONS[id(held_ids)] = cached
    params = {"tenant": tenant_id, "identifier": identifier, "subject": subject_id}
    return list(conn.execute(cached[1], params).all())


def add_holder(
    conn: Connection, tenant_id: str, kind: str, subject_id: str, role_ids: list[str], now: datetime
) -> None:
    if not role_ids:
        return
    if kind == "user":
        rows = [{"tenant_id": tenant_id, "user_id": subject_id, "role_id": rid, "created_at": now} for rid in role_ids]
        conn.execute(insert(user_roles), rows)
    else:
        rows = [
            {"tenant_id": tenant_id, "client_id": subject_id, "role_id": rid, "created_at": now} for rid in role_ids
        ]
        conn.execute(insert(application_roles), rows)


def remove_holder(conn: Connection, tenant_id: str, kind: str, subject_id: str, role_ids: list[str]) -> None:
    if not role_ids:
        return
    if kind == "user":
        conn.execute(
            delete(user_roles).where(
                user_roles.c.tenant_id == tenant_id,
                user_roles.c.user_id == subject_id,
                user_roles.c.role_id.in_(role_ids),
            )
        )
    else:
        conn.execute(
            delete(application_roles).where(
                application_roles.c.tenant_id == tenant_id,
                application_roles.c.client_id == subject_id,
                application_roles.c.role_id.in_(role_ids),
            )
        )
