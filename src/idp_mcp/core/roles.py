"""Roles: named sets of API permissions, held by users (user roles) or machine-to-machine applications (m2m roles).

What a token carries is decided in core/permissions.py from the roles held when the token is issued, so every change
here (a role removed, a permission taken from a role, a role deleted) shows in the next token.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from idp_mcp.core.applications import ApplicationNotFound
from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import new_id
from idp_mcp.domain import Actor, Clock, as_utc
from idp_mcp.errors import AlreadyExists, NotFound, UserNotFound, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import api_resources as resources_repo
from idp_mcp.store.repos import clients as clients_repo
from idp_mcp.store.repos import roles as repo
from idp_mcp.store.repos import users as users_repo

RoleType = Literal["user", "m2m"]
ROLE_TYPES: tuple[str, ...] = get_args(RoleType)
MAX_NAME, MAX_DESCRIPTION, MAX_ROLE_PERMISSIONS, MAX_ROLES, HOLDERS_SHOWN = 128, 1000, 500, 200, 100
SubjectKind = Literal["user", "application"]


class RoleNotFound(NotFound):
    code = "role.not_found"


class RoleAlreadyExists(AlreadyExists):
    code = "role.already_exists"


@dataclass(frozen=True)
class GrantedPermission:
    resource: str  # the API resource's identifier
    resource_name: str
    permission: str
    description: str


@dataclass(frozen=True)
class Role:
    tenant_id: str
    id: str
    name: str
    description: str
    type: RoleType
    permissions: tuple[GrantedPermission, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RoleHolders:
    users: tuple[tuple[str, str | None, str | None], ...]  # (id, email, username), at most HOLDERS_SHOWN
    applications: tuple[tuple[str, str], ...]  # (id, name), at most HOLDERS_SHOWN
    user_count: int
    application_count: int


@dataclass(frozen=True)
class SubjectRoles:
    """The roles a user or an application holds, and the permissions they add up to (each pair once)."""

    roles: tuple[Role, ...]
    permissions: tuple[GrantedPermission, ...]


@dataclass(frozen=True)
class RoleAssignment:
    kind: SubjectKind
    subject_id: str
    changed: tuple[str, ...]  # role ids added or removed
    unchanged: tuple[str, ...]  # role ids already held (assign) or not held (remove)
    now: SubjectRoles


def _check_text(value: str, what: str, maximum: int, *, required: bool) -> str:
    clean = " ".join(value.split())
    if required and not clean:
        raise ValidationFailed(f"The {what} must not be empty.")
    if len(clean) > maximum:
        raise ValidationFailed(f"The {what} is too long: at most {maximum} characters.")
    return clean


def load_roles(conn: Connection, tenant_id: str, rows: Sequence[Any]) -> list[Role]:
    grants = repo.grants(conn, tenant_id, [row.id for row in rows])
    by_role: dict[str, list[GrantedPermission]] = {}
    for grant in grants:
        by_role.setdefault(grant.role_id, []).append(
            GrantedPermission(grant.resource, grant.resource_name, grant.permission, grant.description)
        )
    return [
        Role(
            tenant_id=row.tenant_id, id=row.id, name=row.name, description=row.description, type=row.type,
            permissions=tuple(by_role.get(row.id, [])), created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )
        for row in rows
    ]  # fmt: skip


def _effective(roles: Sequence[Role]) -> tuple[GrantedPermission, ...]:
    seen: dict[tuple[str, str], GrantedPermission] = {}
    for role in roles:
        for granted in role.permissions:
            seen.setdefault((granted.resource, granted.permission), granted)
    return tuple(sorted(seen.values(), key=lambda g: (g.resource, g.permission)))


class Roles:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit

    # --- roles ---------------------------------------------------------------------------------------

    def _permission_ids(self, conn: Connection, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """The ids of (resource identifier, permission name) pairs, or a refusal naming what does not exist."""
        if len(pairs) > MAX_ROLE_PERMISSIONS:
            raise ValidationFailed(f"A role grants at most {MAX_ROLE_PERMISSIONS} permissions.")
        identifiers = list(dict.fromkeys(resource for resource, _ in pairs))
        resources = {row.identifier: row for row in resources_repo.by_identifiers(conn, tenant_id, identifiers)}
        for identifier in identifiers:
            if identifier not in resources:
                raise ValidationFailed(
                    f"No API resource with the identifier '{identifier[:200]}' in this tenant. Give the identifier "
                    "exactly as listApiResources shows it, or create the API resource first."
                )
        rows = resources_repo.permissions(conn, tenant_id, [row.id for row in resources.values()])
        by_pair = {(r.resource_id, r.name): r.id for r in rows}
        ids: list[str] = []
        for identifier, permission in pairs:
            resource = resources[identifier]
            found = by_pair.get((resource.id, permission))
            if found is None:
                defined = sorted(name for (rid, name) in by_pair if rid == resource.id)
                raise ValidationFailed(
                    f"The API resource {identifier} has no permission '{permission[:70]}'. Its permissions are: "
                    f"{', '.join(defined) or 'none yet'}; add it with updateApiResource first if it is missing."
                )
            if found not in ids:
                ids.append(found)
        return ids

    def create(
        self,
        tenant_id: str,
        *,
        name: str,
        description: str,
        role_type: str,
        permissions: Sequence[tuple[str, str]],
        actor: Actor,
    ) -> Role:
        """Create a role granting ``permissions`` ((resource identifier, permission name) pairs)."""
        if role_type not in ROLE_TYPES:
            raise ValidationFailed(
                f"Unknown role type '{role_type[:20]}': use 'user' (for people) or 'm2m' (for machine-to-machine "
                "applications)."
            )
        clean_name = _check_text(name, "name", MAX_NAME, required=True)
        clean_description = _check_text(description, "description", MAX_DESCRIPTION, required=False)
        now = self._clock()
        role_id = new_id(16)
        duplicate = RoleAlreadyExists(
            f"A role named '{clean_name}' exists already in this tenant. Call listRoles to find it, or choose "
            "another name."
        )
        try:
            with self._db.transaction() as conn:
                if repo.by_name(conn, tenant_id, clean_name) is not None:
                    raise duplicate
                if len(repo.list_roles(conn, tenant_id)) >= MAX_ROLES:
                    raise ValidationFailed(f"A tenant has at most {MAX_ROLES} roles.")
                permission_ids = self._permission_ids(conn, tenant_id, permissions)
                repo.insert_role(
                    conn,
                    {
                        "id": role_id, "tenant_id": tenant_id, "name": clean_name, "description": clean_description,
                        "type": role_type, "created_at": now, "updated_at": now,
                    },
                )  # fmt: skip
                repo.set_permissions(conn, tenant_id, role_id, permission_ids)
                role = load_roles(conn, tenant_id, [repo.get(conn, tenant_id, role_id)])[0]
                self._audit.write(
                    conn, actor, "role.create", target_type="role", target_id=role_id, tenant_id=tenant_id,
                    details={"name": clean_name, "type": role_type, "permissions": _pairs(role.permissions)},
                )  # fmt: skip
        except IntegrityError as exc:  # a concurrent create with the same name
            raise duplicate from exc
        return role

    def list(self, tenant_id: str) -> list[Role]:
        with self._db.read() as conn:
            return load_roles(conn, tenant_id, repo.list_roles(conn, tenant_id))

    def get(self, tenant_id: str, role_id: str) -> Role:
        with self._db.read() as conn:
            return self._get(conn, tenant_id, role_id)

    def _get(self, conn: Connection, tenant_id: str, role_id: str) -> Role:
        row = repo.get(conn, tenant_id, role_id)
        if row is None:
            raise RoleNotFound(f"No role '{role_id[:64]}' in this tenant. Call listRoles to see the ids.")
        return load_roles(conn, tenant_id, [row])[0]

    def with_holders(self, tenant_id: str, role_id: str) -> tuple[Role, RoleHolders]:
        """A role and who holds it (the first users and applications, and how many of each)."""
        with self._db.read() as conn:
            role = self._get(conn, tenant_id, role_id)
            users, apps, user_count, app_count = repo.holders(conn, tenant_id, role_id, HOLDERS_SHOWN)
        return role, RoleHolders(
            users=tuple((u.id, u.email, u.username) for u in users),
            applications=tuple((a.client_id, a.name) for a in apps),
            user_count=user_count,
            application_count=app_count,
        )

    def update(
        self,
        tenant_id: str,
        role_id: str,
        *,
        actor: Actor,
        name: str | None = None,
        description: str | None = None,
        permissions: Sequence[tuple[str, str]] | None = None,
    ) -> tuple[Role, Role, tuple[str, ...]]:
        """Rename, describe, or replace the permissions a role grants. Returns (before, after, changed fields)."""
        clean_name = _check_text(name, "name", MAX_NAME, required=True) if name is not None else None
        clean_description = (
            _check_text(description, "description", MAX_DESCRIPTION, required=False)
            if description is not None
            else None
        )
        try:
            with self._db.transaction() as conn:
                before = self._get(conn, tenant_id, role_id)
                values: dict[str, Any] = {}
                if clean_name is not None and clean_name != before.name:
                    other = repo.by_name(conn, tenant_id, clean_name)
                    if other is not None and other.id != role_id:
                        raise RoleAlreadyExists(f"Another role is named '{clean_name}' already; choose another name.")
                    values["name"] = clean_name
                if clean_description is not None and clean_description != before.description:
                    values["description"] = clean_description
                changed = sorted(values)
                if permissions is not None:
                    ids = self._permission_ids(conn, tenant_id, permissions)
                    wanted = {(resource, permission) for resource, permission in permissions}
                    if wanted != {(g.resource, g.permission) for g in before.permissions}:
                        repo.set_permissions(conn, tenant_id, role_id, ids)
                        changed.append("permissions")
                if not changed:
                    self._audit.ride(conn)
                    return before, before, ()
                repo.update_role(conn, tenant_id, role_id, {**values, "updated_at": self._clock()})
                after = self._get(conn, tenant_id, role_id)
                self._audit.write(
                    conn, actor, "role.update", target_type="role", target_id=role_id, tenant_id=tenant_id,
                    details={"changed": changed, "permissions": _pairs(after.permissions)},
                )  # fmt: skip
        except IntegrityError as exc:
            raise RoleAlreadyExists("Another role has this name already; choose another name.") from exc
        return before, after, tuple(changed)

    def delete(self, tenant_id: str, role_id: str, actor: Actor) -> tuple[Role, RoleHolders]:
        """Delete a role: its holders lose its permissions from their next token on."""
        with self._db.transaction() as conn:
            role = self._get(conn, tenant_id, role_id)
            users, apps, user_count, app_count = repo.holders(conn, tenant_id, role_id, HOLDERS_SHOWN)
            repo.delete_role(conn, tenant_id, role_id)
            self._audit.write(
                conn, actor, "role.delete", target_type="role", target_id=role_id, tenant_id=tenant_id,
                details={"name": role.name, "type": role.type, "users": user_count, "applications": app_count},
            )  # fmt: skip
        holders = RoleHolders(
            users=tuple((u.id, u.email, u.username) for u in users),
            applications=tuple((a.client_id, a.name) for a in apps),
            user_count=user_count,
            application_count=app_count,
        )
        return role, holders

    # --- holders -------------------------------------------------------------------------------------

    def _subject(
        self, conn: Connection, tenant_id: str, user_id: str | None, application_id: str | None
    ) -> tuple[SubjectKind, str]:
        if (user_id is None) == (application_id is None):
            raise ValidationFailed(
                "Give exactly one of userId (for a user role) or applicationId (for an m2m role of a "
                "machine-to-machine application)."
            )
        if user_id is not None:
            if users_repo.get(conn, tenant_id, user_id) is None:
                raise UserNotFound(f"No user '{user_id[:64]}' in this tenant. Call listUsers to find the id.")
            return "user", user_id
        assert application_id is not None
        client = clients_repo.get(conn, tenant_id, application_id)
        if client is None or client.origin != "application":
            raise ApplicationNotFound(
                f"No application '{application_id[:64]}' in this tenant. Call listApplications to see the ids."
            )
        app_type = client.metadata.get("application_type")
        if app_type != "m2m":
            raise ValidationFailed(
                f"Only machine-to-machine (m2m) applications hold roles; '{client.name}' is a {app_type} application, "
                "whose tokens carry the signed-in user's permissions. Assign user roles to its users instead."
            )
        return "application", application_id

    def _roles_for(
        self, conn: Connection, tenant_id: str, role_ids: Sequence[str], kind: SubjectKind
    ) -> builtins.list[Any]:
        unique = list(dict.fromkeys(role_ids))
        if not unique:
            raise ValidationFailed("Give at least one role id in roleIds (from listRoles).")
        rows = {row.id: row for row in repo.by_ids(conn, tenant_id, unique)}
        missing = [rid for rid in unique if rid not in rows]
        if missing:
            raise RoleNotFound(
                f"No role '{missing[0][:64]}' in this tenant. Call listRoles to see the ids; nothing was changed."
            )
        wanted = "user" if kind == "user" else "m2m"
        for rid in unique:
            if rows[rid].type != wanted:
                if wanted == "user":
                    raise ValidationFailed(
                        f"'{rows[rid].name}' is an m2m role: it goes to machine-to-machine applications "
                        "(applicationId), not to users. Nothing was changed."
                    )
                raise ValidationFailed(
                    f"'{rows[rid].name}' is a user role: it goes to users (userId), not to applications. Nothing was "
                    "changed."
                )
        return [rows[rid] for rid in unique]

    def _held(self, conn: Connection, tenant_id: str, kind: SubjectKind, subject_id: str) -> SubjectRoles:
        held_ids = repo.role_ids_of(conn, tenant_id, kind, subject_id)
        rows = sorted(repo.by_ids(conn, tenant_id, held_ids), key=lambda row: (row.name, row.id))
        roles = load_roles(conn, tenant_id, rows)
        return SubjectRoles(tuple(roles), _effective(roles))

    def assign(
        self,
        tenant_id: str,
        role_ids: Sequence[str],
        *,
        actor: Actor,
        user_id: str | None = None,
        application_id: str | None = None,
    ) -> RoleAssignment:
        """Give roles to a user (user roles) or an m2m application (m2m roles); roles already held stay."""
        with self._db.transaction() as conn:
            kind, subject_id = self._subject(conn, tenant_id, user_id, application_id)
            roles = self._roles_for(conn, tenant_id, role_ids, kind)
            held = set(repo.role_ids_of(conn, tenant_id, kind, subject_id))
            new = [row.id for row in roles if row.id not in held]
            repo.add_holder(conn, tenant_id, kind, subject_id, new, self._clock())
            if new:
                self._audit.write(
                    conn, actor, "role.assign", target_type=kind, target_id=subject_id, tenant_id=tenant_id,
                    details={"roles": new},
                )  # fmt: skip
            else:
                self._audit.ride(conn)
            now = self._held(conn, tenant_id, kind, subject_id)
        return RoleAssignment(kind, subject_id, tuple(new), tuple(r.id for r in roles if r.id in held), now)

    def remove(
        self,
        tenant_id: str,
        role_ids: Sequence[str],
        *,
        actor: Actor,
        user_id: str | None = None,
        application_id: str | None = None,
    ) -> RoleAssignment:
        """Take roles from a user or an m2m application; from their next token on they no longer count."""
        with self._db.transaction() as conn:
            kind, subject_id = self._subject(conn, tenant_id, user_id, application_id)
            roles = self._roles_for(conn, tenant_id, role_ids, kind)
            held = set(repo.role_ids_of(conn, tenant_id, kind, subject_id))
            gone = [row.id for row in roles if row.id in held]
            repo.remove_holder(conn, tenant_id, kind, subject_id, gone)
            if gone:
                self._audit.write(
                    conn, actor, "role.remove", target_type=kind, target_id=subject_id, tenant_id=tenant_id,
                    details={"roles": gone},
                )  # fmt: skip
            else:
                self._audit.ride(conn)
            now = self._held(conn, tenant_id, kind, subject_id)
        return RoleAssignment(kind, subject_id, tuple(gone), tuple(r.id for r in roles if r.id not in held), now)

    def of_subject(self, tenant_id: str, kind: SubjectKind, subject_id: str) -> SubjectRoles:
        """The roles a user or an application holds, and its effective permissions."""
        with self._db.read() as conn:
            return self._held(conn, tenant_id, kind, subject_id)


def _pairs(permissions: Sequence[GrantedPermission]) -> list[str]:
    return [f"{g.resource} {g.permission}" for g in permissions]
