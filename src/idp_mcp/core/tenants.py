"""Tenants and who administers them."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from idp_mcp.core.audit import AuditLog
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor, Clock, Tenant
from idp_mcp.errors import Forbidden, TenantNotFound, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import tenants as repo


class Tenants:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit

    def rename(self, tenant_id: str, name: str, actor: Actor) -> Tenant:
        return rename_tenant(self._db, self._audit, tenant_id, name, actor)

    def ensure_defaults(self) -> None:
        """Create the admin tenant (administrators live there) and the default tenant, once."""
        for tenant_id, name in ((ADMIN_TENANT_ID, "Administrators"), (DEFAULT_TENANT_ID, "Default")):
            try:
                with self._db.transaction() as conn:
                    if repo.get(conn, tenant_id) is None:
                        repo.create(conn, tenant_id, name, self._clock())
            except IntegrityError:
                # Another replica created it between our read and our write: that is the state we want.
                pass

    def get(self, tenant_id: str) -> Tenant:
        with self._db.transaction() as conn:
            tenant = repo.get(conn, tenant_id)
        if tenant is None:
            raise TenantNotFound(f"Tenant '{tenant_id}' does not exist.")
        return tenant

    def memberships(self, admin_user_id: str) -> list[tuple[Tenant, str]]:
        """The tenants an administrator may act on, with their role in each."""
        with self._db.transaction() as conn:
            return repo.memberships(conn, admin_user_id)

    def require_member(self, tenant_id: str, admin_user_id: str) -> str:
        """The administrator's role in the tenant; :class:`Forbidden` when they are not a member."""
        with self._db.transaction() as conn:
            role = repo.member_role(conn, tenant_id, admin_user_id)
        if role is None:
            raise Forbidden(f"You are not an administrator of tenant '{tenant_id}'.")
        return role


MAX_TENANT_NAME = 128


def rename_tenant(db: Database, audit: AuditLog, tenant_id: str, name: str, actor: Actor) -> Tenant:
    """Give a tenant a new display name; audited with the human and the agent that asked."""
    clean = " ".join(name.split())
    if not clean or len(clean) > MAX_TENANT_NAME:
        raise ValidationFailed(f"The tenant name must be 1 to {MAX_TENANT_NAME} characters.")
    with db.transaction() as conn:
        before = repo.get(conn, tenant_id)
        if before is None:
            raise TenantNotFound(f"Tenant '{tenant_id}' does not exist.")
        repo.rename(conn, tenant_id, clean)
        audit.write(
            conn, actor, "tenant.update", target_type="tenant", target_id=tenant_id, tenant_id=tenant_id,
            details={"name": {"from": before.name, "to": clean}},
        )  # fmt: skip
    return Tenant(id=tenant_id, name=clean, created_at=before.created_at)
