"""What a token may carry: the permissions of one API resource that a subject (a user or an m2m application)
holds through its roles.

This is the one place that evaluates roles, so every grant (code, refresh, client credentials) and every future
scope of evaluation agree. Today roles come from the tenant (user roles, m2m roles); an organization adds a
:class:`RoleSource` of its own (its members' organization roles) and passes it to :meth:`Permissions.evaluate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, Select

from idp_mcp.store.db import Database
from idp_mcp.store.repos import api_resources as resources_repo
from idp_mcp.store.repos import roles as roles_repo

SubjectKind = Literal["user", "application"]


@dataclass(frozen=True)
class Subject:
    """Who a token is about: a user of the tenant, or an m2m application acting on its own behalf."""

    kind: SubjectKind
    id: str


class RoleSource(Protocol):
    """Where a subject's permissions come from: a query of the permission ids it holds, with the bind parameters
    ``:tenant`` and ``:subject`` (an organization's source would take its organization from the subject's context
    and union its organization roles with the tenant's). Return the same object every time: its statement is built
    once."""

    def held_permission_ids(self, subject: Subject) -> Select[Any]: ...


class TenantRoles:
    """The tenant's own roles: user roles of a user, m2m roles of an application."""

    def held_permission_ids(self, subject: Subject) -> Select[Any]:
        return roles_repo.HELD_PERMISSION_IDS[subject.kind]


TENANT_ROLES = TenantRoles()


@dataclass(frozen=True)
class ResourceAccess:
    """One API resource as a token sees it, and what the subject holds on it when the token is issued."""

    identifier: str
    defined: frozenset[str]  # every permission the resource defines
    held: frozenset[str]  # those the subject holds through its roles
    access_token_ttl: int | None

    def granted(self, requested: Sequence[str] | None) -> list[str]:
        """The requested permissions the subject holds, in request order; with no request (client credentials
        without ``scope``) every permission it holds. Not-held ones are left out, never refused."""
        if requested is None:
            return sorted(self.held)
        return [name for name in dict.fromkeys(requested) if name in self.held]


class Permissions:
    def __init__(self, db: Database) -> None:
        self._db = db

    def defined(self, tenant_id: str, identifiers: Iterable[str]) -> dict[str, frozenset[str]]:
        """The API resources among ``identifiers`` that exist in the tenant, each with the permissions it defines
        (for checking an authorization request before anyone signs in)."""
        wanted = list(dict.fromkeys(identifiers))
        with self._db.read() as conn:
            rows = resources_repo.by_identifiers(conn, tenant_id, wanted)
            names = resources_repo.permissions(conn, tenant_id, [row.id for row in rows])
        by_id: dict[str, set[str]] = {row.id: set() for row in rows}
        for permission in names:
            by_id[permission.resource_id].add(permission.name)
        return {row.identifier: frozenset(by_id[row.id]) for row in rows}

    def evaluate(
        self, tenant_id: str, subject: Subject, identifier: str, *, source: RoleSource = TENANT_ROLES
    ) -> ResourceAccess | None:
        """The resource named ``identifier`` and what ``subject`` holds on it now, in one read transaction; None
        when the tenant has no such resource (deleted in the meantime, or never there)."""
        with self._db.read() as conn:
            return evaluate_in(conn, tenant_id, subject, identifier, source=source)


def evaluate_in(
    conn: Connection, tenant_id: str, subject: Subject, identifier: str, *, source: RoleSource = TENANT_ROLES
) -> ResourceAccess | None:
    """:meth:`Permissions.evaluate` inside the caller's transaction (a use case that reads more in the same one)."""
    rows = roles_repo.evaluate(conn, tenant_id, identifier, subject.id, source.held_permission_ids(subject))
    if not rows:
        return None
    defined = frozenset(row.name for row in rows if row.name is not None)
    held = frozenset(row.name for row in rows if row.name is not None and row.held)
    return ResourceAccess(rows[0].identifier, defined, held, rows[0].access_token_ttl)
