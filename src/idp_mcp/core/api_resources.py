"""API resources: the APIs a tenant protects with its access tokens, and the permissions each one defines.

An API resource's ``identifier`` is its RFC 8707 resource indicator: applications ask for tokens with
``resource=<identifier>`` and the API checks that the token's ``aud`` is exactly that string. Roles (core/roles.py)
grant the permissions; core/permissions.py decides what a token carries.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import new_id
from idp_mcp.domain import SCOPE_EMAIL, SCOPE_OFFLINE, SCOPE_OPENID, SCOPE_PROFILE, Actor, Clock, as_utc
from idp_mcp.errors import AlreadyExists, NotFound, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import api_resources as repo
from idp_mcp.store.repos import roles as roles_repo

PERMISSION_NAME = re.compile(r"^[A-Za-z0-9:._-]{1,64}$")
#: OpenID Connect scopes keep their meaning on every token request, so no API may define a permission so named.
RESERVED_PERMISSIONS = frozenset({SCOPE_OPENID, SCOPE_PROFILE, SCOPE_EMAIL, SCOPE_OFFLINE})
MAX_NAME, MAX_IDENTIFIER, MAX_DESCRIPTION, MAX_PERMISSIONS, MAX_RESOURCES = 128, 512, 256, 100, 100
MIN_TTL, MAX_TTL = 60, 86400
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Printable ASCII without space, quotes, backslash or angle brackets: an identifier is quoted in OAuth error
# descriptions (RFC 6749 §5.2 allows no '"' or '\\' there) and compared byte for byte by APIs.
_IDENTIFIER_CHARS = re.compile(r"^[!#-;=?-\[\]-~]+$")


class ApiResourceNotFound(NotFound):
    code = "api_resource.not_found"


class ApiResourceAlreadyExists(AlreadyExists):
    code = "api_resource.already_exists"


@dataclass(frozen=True)
class Permission:
    name: str
    description: str


@dataclass(frozen=True)
class ApiResource:
    tenant_id: str
    id: str
    name: str
    identifier: str
    permissions: tuple[Permission, ...]
    access_token_ttl: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LostPermission:
    """A permission removed from an API resource, and the roles that granted it (they no longer do)."""

    permission: str
    roles: tuple[tuple[str, str], ...]  # (role id, role name)


@dataclass(frozen=True)
class ResourceUpdate:
    before: ApiResource
    after: ApiResource
    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[LostPermission, ...]


def check_identifier(identifier: str) -> str:
    """An API identifier: an absolute https URI (http only on a loopback host, for development), without query,
    fragment or user info. Compared exactly: no normalisation, so what the API checks is what was registered."""
    if not identifier or len(identifier) > MAX_IDENTIFIER:
        raise ValidationFailed(
            f"The identifier must be 1 to {MAX_IDENTIFIER} characters, e.g. https://api.example.com."
        )
    if not _IDENTIFIER_CHARS.match(identifier):
        raise ValidationFailed(
            "The identifier must be a plain URI (printable ASCII without spaces, quotes, backslashes or angle "
            "brackets), e.g. https://api.example.com."
        )
    try:
        parts = urlsplit(identifier)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ValidationFailed(f"'{identifier[:100]}' is not a valid URI, e.g. https://api.example.com.") from None
    host = (parts.hostname or "").lower()
    loopback = parts.scheme == "http" and (host in ("localhost", "127.0.0.1", "::1"))
    if parts.scheme != "https" and not loopback:
        raise ValidationFailed(
            f"'{identifier[:100]}' must be an absolute https URI such as https://api.example.com (http is allowed "
            "only on localhost, for development)."
        )
    if not host or "@" in parts.netloc:
        raise ValidationFailed(f"'{identifier[:100]}' needs a host and no user info, e.g. https://api.example.com.")
    if parts.query or parts.fragment or "#" in identifier or "?" in identifier:
        raise ValidationFailed(f"'{identifier[:100]}' must have no query or fragment (RFC 8707).")
    return identifier


def check_permissions(permissions: Sequence[tuple[str, str]]) -> list[Permission]:
    """Permission names unique within the resource, each 1-64 characters of A-Za-z0-9:._- and not an OpenID scope."""
    if len(permissions) > MAX_PERMISSIONS:
        raise ValidationFailed(f"At most {MAX_PERMISSIONS} permissions per API resource.")
    checked: dict[str, Permission] = {}
    for name, description in permissions:
        if not PERMISSION_NAME.match(name):
            raise ValidationFailed(
                f"The permission name '{name[:70]}' is not valid: use 1 to 64 letters, digits, ':', '.', '_' or '-', "
                "e.g. read:invoices."
            )
        if name in RESERVED_PERMISSIONS:
            raise ValidationFailed(f"'{name}' is an OpenID Connect scope; give the permission another name.")
        if name in checked:
            raise ValidationFailed(f"The permission '{name}' is listed twice; each name must be unique.")
        clean = " ".join(description.split())
        if len(clean) > MAX_DESCRIPTION:
            raise ValidationFailed(f"The description of '{name}' is too long: at most {MAX_DESCRIPTION} characters.")
        checked[name] = Permission(name, clean)
    return list(checked.values())


def _check_name(name: str) -> str:
    clean = " ".join(name.split())
    if not clean:
        raise ValidationFailed("The name must not be empty.")
    if len(clean) > MAX_NAME:
        raise ValidationFailed(f"The name is too long: at most {MAX_NAME} characters.")
    return clean


def _check_ttl(ttl: int | None) -> int | None:
    if ttl is not None and not MIN_TTL <= ttl <= MAX_TTL:
        raise ValidationFailed(
            f"accessTokenTtl is in seconds, from {MIN_TTL} to {MAX_TTL}; leave it out for the default."
        )
    return ttl


def _to_resource(row: Any, permissions: list[Any]) -> ApiResource:
    return ApiResource(
        tenant_id=row.tenant_id,
        id=row.id,
        name=row.name,
        identifier=row.identifier,
        permissions=tuple(Permission(p.name, p.description) for p in permissions),
        access_token_ttl=row.access_token_ttl,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def load(conn: Connection, tenant_id: str, rows: list[Any]) -> list[ApiResource]:
    """Resources with their permissions, in two statements."""
    permissions = repo.permissions(conn, tenant_id, [row.id for row in rows])
    by_resource: dict[str, list[Any]] = {}
    for permission in permissions:
        by_resource.setdefault(permission.resource_id, []).append(permission)
    return [_to_resource(row, by_resource.get(row.id, [])) for row in rows]


class ApiResources:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog, public_url: str) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._public_url = public_url

    def _reserved(self, tenant_id: str) -> tuple[str, ...]:
        # The issuer is the audience of tokens without a resource; the MCP resource is this server's own API.
        return (f"{self._public_url}/t/{tenant_id}/oidc", f"{self._public_url}/mcp")

    def create(
        self,
        tenant_id: str,
        *,
        name: str,
        identifier: str,
        permissions: Sequence[tuple[str, str]],
        actor: Actor,
        access_token_ttl: int | None = None,
    ) -> ApiResource:
        """Register an API; every field is checked before anything is written."""
        clean_name = _check_name(name)
        checked_identifier = check_identifier(identifier)
        if checked_identifier in self._reserved(tenant_id):
            raise ValidationFailed(
                f"'{checked_identifier}' is this identity provider's own address; use your API's URL instead."
            )
        checked = check_permissions(permissions)
        ttl = _check_ttl(access_token_ttl)
        now = self._clock()
        resource_id = new_id(16)
        duplicate = ApiResourceAlreadyExists(
            f"An API resource with the identifier {checked_identifier} exists already in this tenant. Call "
            "listApiResources to find it, or choose another identifier."
        )
        try:
            with self._db.transaction() as conn:
                if repo.by_identifier(conn, tenant_id, checked_identifier) is not None:
                    raise duplicate
                if repo.count_resources(conn, tenant_id) >= MAX_RESOURCES:
                    raise ValidationFailed(f"A tenant has at most {MAX_RESOURCES} API resources.")
                repo.insert_resource(
                    conn,
                    {
                        "id": resource_id, "tenant_id": tenant_id, "name": clean_name,
                        "identifier": checked_identifier, "access_token_ttl": ttl, "created_at": now,
                        "updated_at": now,
                    },
                )  # fmt: skip
                self._insert_permissions(conn, tenant_id, resource_id, checked, now)
                self._audit.write(
                    conn, actor, "api_resource.create", target_type="api_resource", target_id=resource_id,
                    tenant_id=tenant_id,
                    details={"name": clean_name, "identifier": checked_identifier,
                             "permissions": [p.name for p in checked], "access_token_ttl": ttl},
                )  # fmt: skip
                row = repo.get(conn, tenant_id, resource_id)
                created = load(conn, tenant_id, [row])[0]
        except IntegrityError as exc:  # a concurrent create with the same identifier
            raise duplicate from exc
        return created

    def _insert_permissions(
        self, conn: Connection, tenant_id: str, resource_id: str, permissions: list[Permission], now: datetime
    ) -> None:
        for offset, permission in enumerate(permissions):
            # Distinct timestamps keep the order the permissions were given in.
            repo.insert_permission(
                conn,
                {
                    "id": new_id(16), "tenant_id": tenant_id, "resource_id": resource_id, "name": permission.name,
                    "description": permission.description,
                    "created_at": now.replace(microsecond=0) + timedelta(microseconds=offset),
                },
            )  # fmt: skip

    def list(self, tenant_id: str) -> list[ApiResource]:
        """Every API resource of the tenant, oldest first, with its permissions."""
        with self._db.read() as conn:
            return load(conn, tenant_id, repo.list_resources(conn, tenant_id))

    def get(self, tenant_id: str, resource_id: str) -> ApiResource:
        with self._db.read() as conn:
            return self._get(conn, tenant_id, resource_id)

    def find(self, tenant_id: str, identifiers: Sequence[str]) -> builtins.list[ApiResource]:
        """The API resources with these identifiers (those that exist), with their permissions."""
        with self._db.read() as conn:
            return load(conn, tenant_id, repo.by_identifiers(conn, tenant_id, list(identifiers)))

    def suggested_identifier(self, tenant_id: str, application_id: str | None = None) -> str | None:
        """The API a guide is most likely about, when that is clear: the one API an application's m2m roles grant
        permissions on, else the tenant's only API resource; None when it is not clear."""
        with self._db.read() as conn:
            if application_id is not None:
                role_ids = roles_repo.role_ids_of(conn, tenant_id, "application", application_id)
                granted = {grant.resource for grant in roles_repo.grants(conn, tenant_id, role_ids)}
                if len(granted) == 1:
                    return str(granted.pop())
            resources = repo.list_resources(conn, tenant_id)
        return str(resources[0].identifier) if len(resources) == 1 else None

    def _get(self, conn: Connection, tenant_id: str, resource_id: str) -> ApiResource:
        row = repo.get(conn, tenant_id, resource_id)
        if row is None:
            raise ApiResourceNotFound(
                f"No API resource '{resource_id[:64]}' in this tenant. Call listApiResources to see the ids."
            )
        return load(conn, tenant_id, [row])[0]

    def update(
        self,
        tenant_id: str,
        resource_id: str,
        *,
        actor: Actor,
        name: str | None = None,
        permissions: Sequence[tuple[str, str]] | None = None,
        access_token_ttl: int | None = None,
        clear_access_token_ttl: bool = False,
    ) -> ResourceUpdate:
        """Rename, replace the permission list (kept names keep their role grants; removed ones leave every role
        that granted them) or change the token lifetime. The identifier never changes."""
        clean_name = _check_name(name) if name is not None else None
        checked = check_permissions(permissions) if permissions is not None else None
        ttl = _check_ttl(access_token_ttl)
        now = self._clock()
        with self._db.transaction() as conn:
            before = self._get(conn, tenant_id, resource_id)
            values: dict[str, Any] = {}
            if clean_name is not None and clean_name != before.name:
                values["name"] = clean_name
            new_ttl = None if clear_access_token_ttl else (ttl if ttl is not None else before.access_token_ttl)
            if new_ttl != before.access_token_ttl:
                values["access_token_ttl"] = new_ttl
            added: list[str] = []
            lost: list[LostPermission] = []
            described = False
            if checked is not None:
                current = {p.name: p for p in before.permissions}
                wanted = {p.name: p for p in checked}
                rows = {row.name: row for row in repo.permissions(conn, tenant_id, [resource_id])}
                removed_ids = [rows[n].id for n in current if n not in wanted]
                granting = repo.roles_granting(conn, tenant_id, removed_ids)
                for permission_name in current:
                    if permission_name not in wanted:
                        pid = rows[permission_name].id
                        lost.append(LostPermission(permission_name, tuple((r, n) for p, r, n in granting if p == pid)))
                repo.delete_permissions(conn, tenant_id, removed_ids)
                for permission_name, permission in wanted.items():
                    if permission_name in current and current[permission_name].description != permission.description:
                        repo.update_permission_description(
                            conn, tenant_id, rows[permission_name].id, permission.description
                        )
                        described = True
                new = [p for n, p in wanted.items() if n not in current]
                added = [p.name for p in new]
                self._insert_permissions(conn, tenant_id, resource_id, new, now)
            changed = sorted([*values, *(["permissions"] if added or lost or described else [])])
            if not changed:
                self._audit.ride(conn)
                return ResourceUpdate(before, before, (), (), ())
            repo.update_resource(conn, tenant_id, resource_id, {**values, "updated_at": now})
            self._audit.write(
                conn, actor, "api_resource.update", target_type="api_resource", target_id=resource_id,
                tenant_id=tenant_id,
                details={"changed": changed, "added_permissions": added,
                         "removed_permissions": [item.permission for item in lost]},
            )  # fmt: skip
            after = self._get(conn, tenant_id, resource_id)
        return ResourceUpdate(before, after, tuple(changed), tuple(added), tuple(lost))

    def delete(self, tenant_id: str, resource_id: str, actor: Actor) -> tuple[ApiResource, builtins.list[str]]:
        """Delete an API resource and its permissions; the roles that granted them (their names are returned) no
        longer do. Tokens already issued stay valid until they expire; no new token names the resource."""
        with self._db.transaction() as conn:
            current = self._get(conn, tenant_id, resource_id)
            rows = repo.permissions(conn, tenant_id, [resource_id])
            affected = sorted({name for _, _, name in repo.roles_granting(conn, tenant_id, [r.id for r in rows])})
            repo.delete_resource(conn, tenant_id, resource_id)
            self._audit.write(
                conn, actor, "api_resource.delete", target_type="api_resource", target_id=resource_id,
                tenant_id=tenant_id,
                details={"name": current.name, "identifier": current.identifier, "roles_affected": affected},
            )  # fmt: skip
        return current, affected
