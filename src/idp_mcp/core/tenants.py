"""Tenants and who administers them: every administrator is a member of the tenants they were added to, with a
role. Owners and admins may change a tenant; read-only members may only read it (their agents get the read tools, the
console refuses their writes). A tenant always keeps at least one owner."""

from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError

from idp_mcp.core.audit import AuditLog
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, SCOPE_WRITE, Actor, Clock, Tenant
from idp_mcp.errors import AlreadyExists, Forbidden, TenantNotFound, UserNotFound, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import tenants as repo
from idp_mcp.store.repos import users as users_repo

MAX_TENANT_NAME = 128
TENANT_ID = re.compile(r"^[a-z][a-z0-9-]{1,31}$")

OWNER, ADMIN, READ_ONLY = "owner", "admin", "read-only"
ROLES = (OWNER, ADMIN, READ_ONLY)


class ReadOnlyMember(Forbidden):
    code = "tenant.read_only"


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationFailed(f"A role is one of {', '.join(ROLES)} (not '{role[:32]}').")
    return role


def may_write(role: str | None) -> bool:
    """Whether a member with ``role`` may change the tenant (owners and admins)."""
    return role in (OWNER, ADMIN)


def withheld_scopes(role: str) -> frozenset[str]:
    """The MCP scopes a member with ``role`` may not use on the tenant, whatever a consent granted."""
    return frozenset() if may_write(role) else frozenset({SCOPE_WRITE})


def _clean_name(name: str) -> str:
    clean = " ".join(name.split())
    if not clean or len(clean) > MAX_TENANT_NAME:
        raise ValidationFailed(f"The tenant name must be 1 to {MAX_TENANT_NAME} characters.")
    return clean


class Tenants:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit

    def create(self, tenant_id: str, name: str, *, owner_user_id: str, actor: Actor) -> Tenant:
        """Create a tenant administered by ``owner_user_id`` (an administrator)."""
        if not TENANT_ID.match(tenant_id) or tenant_id == ADMIN_TENANT_ID:
            raise ValidationFailed(
                "A tenant id is 2 to 32 lowercase letters, digits and hyphens, starting with a letter "
                f"(and not '{ADMIN_TENANT_ID}')."
            )
        clean = _clean_name(name)
        now = self._clock()
        try:
            with self._db.transaction() as conn:
                if repo.get(conn, tenant_id) is not None:
                    raise AlreadyExists(f"Tenant '{tenant_id}' exists already.")
                tenant = repo.create(conn, tenant_id, clean, now)
                repo.add_member(conn, tenant_id, owner_user_id, OWNER, now)
                self._audit.write(
                    conn, actor, "tenant.create", target_type="tenant", target_id=tenant_id, tenant_id=tenant_id,
                    details={"name": clean, "owner": owner_user_id},
                )  # fmt: skip
        except IntegrityError as exc:
            raise AlreadyExists(f"Tenant '{tenant_id}' exists already.") from exc
        return tenant

    def rename(self, tenant_id: str, name: str, actor: Actor) -> Tenant:
        """Give a tenant a new display name; audited with the human and the agent that asked."""
        clean = _clean_name(name)
        with self._db.transaction() as conn:
            # Locked (PostgreSQL) so concurrent renames queue and each audit row names the name it really replaced.
            before = repo.get(conn, tenant_id, for_update=True)
            if before is None:
                raise TenantNotFound(f"Tenant '{tenant_id}' does not exist.")
            repo.rename(conn, tenant_id, clean)
            self._audit.write(
                conn, actor, "tenant.update", target_type="tenant", target_id=tenant_id, tenant_id=tenant_id,
                details={"name": {"from": before.name, "to": clean}},
            )  # fmt: skip
        return Tenant(id=tenant_id, name=clean, created_at=before.created_at)

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
        with self._db.read() as conn:
            tenant = repo.get(conn, tenant_id)
        if tenant is None:
            raise TenantNotFound(f"Tenant '{tenant_id}' does not exist.")
        return tenant

    def memberships(self, admin_user_id: str) -> list[tuple[Tenant, str]]:
        """The tenants an administrator may act on, with their role in each."""
        with self._db.read() as conn:
            return repo.memberships(conn, admin_user_id)

    def require_member(self, tenant_id: str, admin_user_id: str, *, write: bool = False) -> str:
        """The administrator's role in the tenant; :class:`Forbidden` when they are not a member, or when ``write``
        and their role may only read."""
        with self._db.read() as conn:
            role = repo.member_role(conn, tenant_id, admin_user_id)
        if role is None:
            raise Forbidden(f"You are not an administrator of tenant '{tenant_id}'.")
        if write and not may_write(role):
            raise ReadOnlyMember(
                f"You are a {role} member of tenant '{tenant_id}': you may look but not change anything. "
                "Ask one of its owners for the admin role."
            )
        return role

    def set_member(self, tenant_id: str, admin_user_id: str, role: str, actor: Actor) -> str | None:
        """Make an administrator a member of the tenant with ``role``, or give a member that role; returns the role
        they had before (None when they were not a member). The last owner cannot be given another role."""
        check_role(role)
        now = self._clock()
        with self._db.transaction() as conn:
            if tenant_id == ADMIN_TENANT_ID or repo.get(conn, tenant_id) is None:
                raise TenantNotFound(f"Tenant '{tenant_id[:64]}' does not exist.")
            if users_repo.get(conn, ADMIN_TENANT_ID, admin_user_id) is None:
                raise UserNotFound("No such administrator.")
            before = repo.member_role(conn, tenant_id, admin_user_id)
            if before == role:
                return before
            if before == OWNER and repo.count_role(conn, tenant_id, OWNER) <= 1:
                raise ValidationFailed(
                    f"This is the last owner of tenant '{tenant_id}': make someone else owner first."
                )
            if before is None:
                repo.add_member(conn, tenant_id, admin_user_id, role, now)
            else:
                repo.set_role(conn, tenant_id, admin_user_id, role)
            self._audit.write(
                conn, actor, "tenant.member_set", target_type="user", target_id=admin_user_id, tenant_id=tenant_id,
                details={"role": role, "previous_role": before},
            )  # fmt: skip
        return before
