"""Who is asking in the administrators' console: the browser session of an administrator, and their role in the
tenant a page is about, checked in the same transaction as the page's use case (one use case, one transaction), so
the authorization and the action see one snapshot: a membership removed a moment ago cannot let a change through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from idp_mcp.core.audit import AuditLog, AuditQuery
from idp_mcp.core.sessions import Sessions
from idp_mcp.core.tenants import ReadOnlyMember, Tenants
from idp_mcp.core.users import Users
from idp_mcp.domain import ADMIN_TENANT_ID, Actor, AuditEntry, Tenant, User
from idp_mcp.errors import Forbidden, IdpError
from idp_mcp.store.db import Database
from idp_mcp.store.transaction_tally import apart

T = TypeVar("T")

NOT_MEMBER = "You are not an administrator of this tenant."


class AdministratorSignInRequired(IdpError):
    """The browser has no live administrator session: the console sends it to sign in."""

    code = "auth.sign_in_required"
    status = 401


@dataclass(frozen=True)
class TenantAdministrator:
    """An administrator signed in to the console, on one tenant they are a member of, with their role there."""

    user: User
    tenant: Tenant
    role: str

    @property
    def actor(self) -> Actor:
        """The human, in the browser: no agent."""
        return Actor(tenant_id=self.tenant.id, sub=self.user.id)


class ConsoleAccess:
    """The console's authorization, run inside each page's unit of work."""

    def __init__(self, db: Database, sessions: Sessions, users: Users, tenants: Tenants, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit
        self._sessions = sessions
        self._users = users
        self._tenants = tenants

    def administrator(self, session_id: str | None) -> User:
        """The administrator signed in with cookie value ``session_id``; :class:`AdministratorSignInRequired` when
        there is none (no session, a tenant user's session, or the administrator is gone). Joins the caller's unit of
        work when there is one."""
        with self._db.read():
            session = self._sessions.get(session_id)
            admin_session = session is not None and session.tenant_id == ADMIN_TENANT_ID
            user = self._users.get(ADMIN_TENANT_ID, session.user_id) if session and admin_session else None
        if user is None:
            raise AdministratorSignInRequired("Sign in as an administrator first.")
        return user

    def memberships(self, session_id: str | None) -> tuple[User, list[tuple[Tenant, str]]]:
        """The signed-in administrator and the tenants they administer, with their role in each: one read."""
        with self._db.unit_of_work(writes=False):
            user = self.administrator(session_id)
            return user, self._tenants.memberships(user.id)

    def run(
        self,
        session_id: str | None,
        tenant_id: str,
        use_case: Callable[[TenantAdministrator], T],
        *,
        write: bool = False,
        writes: bool | None = None,
    ) -> tuple[TenantAdministrator, T]:
        """Check that the signed-in administrator is a member of ``tenant_id`` (else :class:`Forbidden`, whether or
        not the tenant exists), with a role that may change it when ``write`` (else :class:`ReadOnlyMember`), then
        run ``use_case``, all in one transaction: a write one when ``writes`` (default: ``write``; a use case that
        writes without changing the tenant, such as showing a new secret once, gives ``writes=True`` alone).
        """
        with self._db.unit_of_work(writes=write if writes is None else writes):
            user = self.administrator(session_id)
            try:
                role = self._tenants.require_member(tenant_id, user.id, write=write)
            except ReadOnlyMember:
                raise
            except Forbidden:
                raise Forbidden(NOT_MEMBER) from None
            access = TenantAdministrator(user, self._tenants.get(tenant_id), role)
            return access, use_case(access)

    def audit_search(
        self, session_id: str | None, tenant_id: str, query: AuditQuery
    ) -> tuple[TenantAdministrator, tuple[list[AuditEntry], dict[str, str]]]:
        """The tenant's audit rows that match ``query`` and the email of each human in them (see
        :meth:`AuditLog.search_with_people`), for a member of the tenant: one read."""
        # Commit the rows queued by this process first, outside the read (a read's snapshot would not see them). They
        # record other requests' work: their commit is not this use case.
        with apart("the audit rows other requests queued"):
            self._audit.flush()
        return self.run(session_id, tenant_id, lambda access: self._audit.search_with_people(tenant_id, query))
