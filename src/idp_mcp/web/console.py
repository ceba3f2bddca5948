"""The administrators' web console: their tenants; each tenant's applications (their settings edited as the
updateApplication tool does) and their secrets (production ones created and shown once, any one revoked by id),
users, audit log and connected agents.

It reuses the pages' rendering, error page, session and CSRF-checked form parsing. Every tenant page checks
membership first, and every application is read by (tenant, id), so one tenant's data never shows in another's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.agents import AgentNotConnected, UserAccess
from idp_mcp.core.applications import Application, ApplicationChanges, ApplicationNotFound
from idp_mcp.core.audit import AuditQuery
from idp_mcp.core.console import AdministratorSignInRequired, TenantAdministrator
from idp_mcp.core.secrets import IssuedSecret, SecretInfo, SecretNotFound
from idp_mcp.core.tenants import may_write
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import AuditEntry, User, as_utc
from idp_mcp.errors import IdpError, UserNotFound, ValidationFailed
from idp_mcp.settings import Settings
from idp_mcp.web.pages import Pages
from idp_mcp.web.security import run_own_scripts

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")

TYPE_LABELS = {
    "traditional": "Traditional web app",
    "spa": "Single-page app",
    "native": "Native app",
    "m2m": "Machine to machine",
}
NO_APPLICATION = "There is no such application in this tenant."
NO_SECRET = "There is no such secret for this application."
NO_USER = "There is no such user in this tenant."
AUDIT_LIMITS = (25, 50, 100, 200)
USERS_PER_PAGE = 25
MAX_PASSWORD_FIELD = 1024  # longer than any allowed password: the policy then says it is too long
_TOOL = re.compile(r"^[a-z][A-Za-z0-9]{0,63}$")
_FILTER_MAX = 512


class _SignInFirst(Exception):
    """The visitor is not signed in as an administrator: send them to sign in, then back to ``next_url``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def applications_url(tenant_id: str) -> str:
    return f"/console/t/{quote(tenant_id, safe='')}/applications"


def application_url(tenant_id: str, application_id: str) -> str:
    return f"{applications_url(tenant_id)}/{quote(application_id, safe='')}"


def tenant_url(tenant_id: str, page: str) -> str:
    return f"/console/t/{quote(tenant_id, safe='')}/{page}"


def user_url(tenant_id: str, user_id: str, page: str = "") -> str:
    return tenant_url(tenant_id, f"users/{quote(user_id, safe='')}" + (f"/{page}" if page else ""))


def secret_url(tenant_id: str, application_id: str, secret_id: str, page: str) -> str:
    return f"{application_url(tenant_id, application_id)}/secrets/{quote(secret_id, safe='')}/{page}"


class Console:
    def __init__(self, pages: Pages, settings: Settings) -> None:
        self.pages = pages
        self.core = pages.core
        self.settings = settings

    def routes(self) -> list[BaseRoute]:
        application = "/console/t/{tenant}/applications/{application_id}"
        return [
            Route("/console", self._page(self.home), methods=["GET"]),
            Route("/console/t/{tenant}/applications", self._page(self.applications), methods=["GET"]),
            Route(application, self._page(self.application), methods=["GET"]),
            Route(f"{application}/settings", self._page(self.save_application), methods=["POST"]),
            Route(f"{application}/secrets", self._page(self.create_secret), methods=["POST"]),
            Route(f"{application}/secrets/{{secret_id}}/reveal", self._page(self.reveal_secret), methods=["GET"]),
            Route(f"{application}/secrets/{{secret_id}}/revoke", self._page(self.confirm_revoke), methods=["GET"]),
            Route(f"{application}/secrets/{{secret_id}}/revoke", self._page(self.revoke_secret), methods=["POST"]),
            Route("/console/t/{tenant}/audit", self._page(self.audit), methods=["GET"]),
            Route("/console/t/{tenant}/agents", self._page(self.agents), methods=["GET"]),
            Route("/console/t/{tenant}/agents/revoke", self._page(self.confirm_revoke_agent), methods=["GET"]),
            Route("/console/t/{tenant}/agents/revoke", self._page(self.revoke_agent), methods=["POST"]),
            Route("/console/t/{tenant}/users", self._page(self.users), methods=["GET"]),
            Route("/console/t/{tenant}/users", self._page(self.create_user), methods=["POST"]),
            Route("/console/t/{tenant}/users/{user_id}", self._page(self.user), methods=["GET"]),
            Route("/console/t/{tenant}/users/{user_id}/suspension", self._page(self.suspend_user), methods=["POST"]),
            Route("/console/t/{tenant}/users/{user_id}/password", self._page(self.set_password), methods=["POST"]),
            Route("/console/t/{tenant}/users/{user_id}/delete", self._page(self.confirm_delete_user), methods=["GET"]),
            Route("/console/t/{tenant}/users/{user_id}/delete", self._page(self.delete_user), methods=["POST"]),
        ]

    def _page(self, handler: Handler) -> Handler:
        """Run a handler; a missing session becomes a sign-in redirect and an :class:`IdpError` an error page."""

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except _SignInFirst as exc:
                return RedirectResponse(f"/sign-in?next={quote(exc.next_url)}", status_code=303)
            except IdpError as exc:
                return await self.pages.error_page(request, exc.code, exc.message, exc.status)

        return page

    # --- who is asking, for what ------------------------------------------------------------------------

    async def _as_admin(
        self, request: Request, use_case: Callable[[TenantAdministrator], T], *, next_url: str | None = None,
        write: bool = False, writes: bool | None = None,
    ) -> tuple[TenantAdministrator, T]:  # fmt: skip
        """One hop, one transaction: the administrator signed in, a member of the tenant in the path (else 403,
        whether or not the tenant exists) with, for a ``write``, a role that may change it (else 403), and the page's
        use case. Their role is kept in ``request.state.role`` for the page to offer only what it allows."""
        run = partial(
            self.core.console.run, self.pages.cookies.session_id(request), request.path_params["tenant"], use_case,
            write=write, writes=writes,
        )  # fmt: skip
        try:
            access, result = await run_in_threadpool(run)
        except AdministratorSignInRequired:
            raise _SignInFirst(next_url or request.url.path) from None
        request.state.role = access.role
        return access, result

    def _application_in(self, tenant_id: str, application_id: str) -> Application:
        """An application of the tenant (in the caller's unit of work)."""
        try:
            return self.core.applications.get(tenant_id, application_id)
        except ApplicationNotFound:
            raise ApplicationNotFound(NO_APPLICATION) from None

    def _user_in(self, tenant_id: str, user_id: str) -> User:
        """A user of the tenant (in the caller's unit of work)."""
        try:
            return self.core.tenant_users.get(tenant_id, user_id)
        except UserNotFound:
            raise UserNotFound(NO_USER) from None

    def _render(self, request: Request, template: str, **context: Any) -> Response:
        """Render a console page; the breadcrumb links follow from the tenant and application in ``context``."""
        tenant, application = context.get("tenant"), context.get("application")
        if tenant is not None:
            context["applications_url"] = applications_url(tenant.id)
            context["tenant_nav"] = [
                ("applications", "Applications", applications_url(tenant.id)),
                ("users", "Users", tenant_url(tenant.id, "users")),
                ("sign-in-experience", "Sign-in experience", tenant_url(tenant.id, "sign-in-experience")),
                ("audit", "Audit log", tenant_url(tenant.id, "audit")),
                ("agents", "Connected agents", tenant_url(tenant.id, "agents")),
            ]
            context.setdefault("section", "applications")
            if application is not None:
                context["url"] = application_url(tenant.id, application.id)
        return self.pages.render(request, template, type_labels=TYPE_LABELS, **context)

    # --- pages ------------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        try:
            user, memberships = await run_in_threadpool(
                self.core.console.memberships, self.pages.cookies.session_id(request)
            )
        except AdministratorSignInRequired:
            raise _SignInFirst(request.url.path) from None
        if len(memberships) == 1:
            return RedirectResponse(applications_url(memberships[0][0].id), status_code=303)
        links = {tenant.id: applications_url(tenant.id) for tenant, _role in memberships}
        return self._render(request, "console/tenants.html", user=user, memberships=memberships, links=links)

    async def applications(self, request: Request) -> Response:
        access, applications = await self._as_admin(request, lambda a: self.core.applications.list(a.tenant.id))
        tenant = access.tenant
        return self._render(
            request, "console/applications.html", user=access.user, tenant=tenant, applications=applications,
            links={app.id: application_url(tenant.id, app.id) for app in applications},
        )  # fmt: skip

    async def application(self, request: Request) -> Response:
        application_id = request.path_params["application_id"]

        def read(access: TenantAdministrator) -> tuple[Application, list[SecretInfo]]:
            application = self._application_in(access.tenant.id, application_id)
            return application, self.core.secrets.list(access.tenant.id, application.id)

        access, (application, secrets) = await self._as_admin(request, read)
        return self._application_page(request, access, application, secrets)

    def _application_page(
        self, request: Request, access: TenantAdministrator, application: Application, secrets: list[SecretInfo], *,
        status: int = 200, error: str = "", form: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        tenant = access.tenant
        issuer = f"{self.settings.public_url}/t/{tenant.id}/oidc"
        return self._render(
            request, "console/application.html", status=status, user=access.user, tenant=tenant,
            application=application, secrets=[_secret_row(secret, tenant.id, application.id) for secret in secrets],
            issuer=issuer, may_write=may_write(access.role), discovery=f"{issuer}/.well-known/openid-configuration",
            settings_form=form or _settings_form(application), settings_error=error,
            saved=request.query_params.get("saved") == "1",
        )  # fmt: skip

    async def save_application(self, request: Request) -> Response:
        """Change an application's settings, as the updateApplication tool does (same checks, same audit row, the
        person as actor); a refusal shows the core's sentence with the values as typed. CSRF first."""
        form = await self.pages.read_form(request)
        back = request.url.path.removesuffix("/settings")
        typed = {key: str(form.get(key) or "").replace("\r\n", "\n")[:_SETTINGS_MAX] for key in _SETTINGS_FIELDS}
        lists = {key: [line.strip() for line in typed[key].split("\n") if line.strip()] for key in _SETTINGS_LISTS}
        application_id = request.path_params["application_id"]

        def save(access: TenantAdministrator) -> tuple[Application, IdpError | None, list[SecretInfo]]:
            application = self._application_in(access.tenant.id, application_id)
            signs_in = application.type != "m2m"
            changes = ApplicationChanges(
                name=typed["name"].strip(), description=typed["description"].strip(),
                redirect_uris=lists["redirect_uris"] if signs_in else None,
                post_logout_redirect_uris=lists["post_logout_redirect_uris"] if signs_in else None,
                cors_origins=lists["cors_origins"] if application.type == "spa" else None,
                id_token_alg="RS256" if typed["id_token_alg"] == "RS256" else "ES256",
            )  # fmt: skip
            try:
                self.core.applications.change(access.tenant.id, application.id, changes, access.actor)
            except IdpError as exc:  # the change rolled back (its savepoint): show the page again, as typed
                return application, exc, self.core.secrets.list(access.tenant.id, application.id)
            return application, None, []

        access, (application, refused, secrets) = await self._as_admin(request, save, next_url=back, write=True)
        if refused is not None:
            status = refused.status if 400 <= refused.status < 500 else 400
            return self._application_page(
                request, access, application, secrets, status=status, error=refused.message, form=typed
            )
        return RedirectResponse(f"{back}?saved=1", status_code=303)

    async def create_secret(self, request: Request) -> Response:
        """Create a production secret, then redirect to the page that shows its value once (POST-redirect-GET: a
        reload shows the page again, never creates a second secret). The CSRF token is checked first."""
        await self.pages.read_form(request)
        back = request.url.path.removesuffix("/secrets")
        session_id = self.pages.cookies.session_id(request) or ""  # the signed-in check refuses an empty one
        application_id = request.path_params["application_id"]

        def create(access: TenantAdministrator) -> str:
            application = self._application_in(access.tenant.id, application_id)
            return self.core.secrets.create_production_to_reveal(
                access.tenant.id, application.id, access.actor, session_id
            )

        access, secret_id = await self._as_admin(request, create, next_url=back, write=True)
        return RedirectResponse(secret_url(access.tenant.id, application_id, secret_id, "reveal"), status_code=303)

    async def reveal_secret(self, request: Request) -> Response:
        """Show a new production secret's value, the first time only, and only to the session that created it."""
        secret_id = request.path_params["secret_id"]
        application_id = request.path_params["application_id"]
        session_id = self.pages.cookies.session_id(request) or ""

        def reveal(access: TenantAdministrator) -> tuple[Application, IssuedSecret | None]:
            application = self._application_in(access.tenant.id, application_id)
            return application, self.core.secrets.take_reveal(access.tenant.id, application.id, secret_id, session_id)

        # Any member may look; taking the value (once) is a write.
        access, (application, issued) = await self._as_admin(request, reveal, writes=True)
        response = self._render(
            request, "console/secret_created.html", user=access.user, tenant=access.tenant, application=application,
            secret=issued, secret_id=secret_id,
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"
        return run_own_scripts(response)  # the copy button

    async def confirm_revoke(self, request: Request) -> Response:
        """Ask before revoking a secret: software that still uses it stops getting tokens at once."""
        application_id = request.path_params["application_id"]
        secret_id = request.path_params["secret_id"]

        def read(access: TenantAdministrator) -> tuple[Application, SecretInfo]:
            application = self._application_in(access.tenant.id, application_id)
            secrets = self.core.secrets.list(access.tenant.id, application.id)
            found = next((secret for secret in secrets if secret.id == secret_id), None)
            if found is None:
                raise SecretNotFound(NO_SECRET)
            return application, found

        access, (application, secret) = await self._as_admin(request, read)
        tenant = access.tenant
        return self._render(
            request, "console/revoke_secret.html", user=access.user, tenant=tenant, application=application,
            secret=_secret_row(secret), action=secret_url(tenant.id, application.id, secret.id, "revoke"),
        )  # fmt: skip

    async def revoke_secret(self, request: Request) -> Response:
        """Revoke one secret (production or temporary) by id; the CSRF token is checked first."""
        await self.pages.read_form(request)
        back = request.url.path.rsplit("/secrets/", 1)[0]
        application_id = request.path_params["application_id"]
        secret_id = request.path_params["secret_id"]

        def revoke(access: TenantAdministrator) -> None:
            application = self._application_in(access.tenant.id, application_id)
            try:
                self.core.secrets.revoke(access.tenant.id, application.id, secret_id, access.actor, production=True)
            except SecretNotFound:
                raise SecretNotFound(NO_SECRET) from None

        access, _ = await self._as_admin(request, revoke, next_url=back, write=True)
        return RedirectResponse(application_url(access.tenant.id, application_id), status_code=303)

    # --- audit log -------------------------------------------------------------------------------------

    async def audit(self, request: Request) -> Response:
        """The tenant's audit log, newest first, narrowed by the filters in the query string; an "older" link pages
        on from the last row shown."""
        filters = {key: (request.query_params.get(key) or "").strip() for key in _AUDIT_FILTERS}
        try:
            query, limit = _audit_query(filters)
        except ValidationFailed as exc:  # shown once the visitor is known to be a member
            access, _ = await self._as_admin(request, lambda a: None)
            return self._render(
                request, "console/audit.html", status=400, user=access.user, tenant=access.tenant, section="audit",
                filters=filters, limits=AUDIT_LIMITS, error=exc.message, rows=[], older_url="",
            )  # fmt: skip
        try:
            access, (entries, people) = await run_in_threadpool(
                self.core.console.audit_search,
                self.pages.cookies.session_id(request), request.path_params["tenant"], query,
            )  # fmt: skip
        except AdministratorSignInRequired:
            raise _SignInFirst(request.url.path) from None
        tenant = access.tenant
        older_url = ""
        if len(entries) > limit:
            entries = entries[:limit]
            kept = {key: value for key, value in filters.items() if value and key != "before"}
            older_url = f"{tenant_url(tenant.id, 'audit')}?{urlencode({**kept, 'before': entries[-1].id})}"
        return self._render(
            request, "console/audit.html", user=access.user, tenant=tenant, section="audit", filters=filters,
            limits=AUDIT_LIMITS, error="", rows=[_audit_row(entry, people) for entry in entries], older_url=older_url,
        )  # fmt: skip

    # --- connected agents -------------------------------------------------------------------------------

    async def agents(self, request: Request) -> Response:
        """The MCP clients holding grants that act on this tenant, who approved them, and revoking one."""
        access, agents = await self._as_admin(request, lambda a: self.core.agents.list(a.tenant.id))
        tenant = access.tenant
        revoke = tenant_url(tenant.id, "agents/revoke")
        rows = [
            {
                "client_id": agent.client_id, "name": agent.name, "approved_by": ", ".join(agent.approved_by),
                "scopes": " ".join(agent.scopes), "grants": agent.grants, "connected": _when(agent.connected_at),
                "last_used": _when(agent.last_used_at, "Unknown"),
                "revoke_url": f"{revoke}?{urlencode({'client': agent.client_id})}",
            }
            for agent in agents
        ]  # fmt: skip
        return self._render(
            request, "console/agents.html", user=access.user, tenant=tenant, section="agents", agents=rows,
            may_write=may_write(access.role), revoked=request.query_params.get("revoked") == "1",
        )  # fmt: skip

    async def confirm_revoke_agent(self, request: Request) -> Response:
        """Ask before revoking an agent: its next call to /mcp is refused and it must be connected again."""
        client_id = request.query_params.get("client", "")
        access, agents = await self._as_admin(request, lambda a: self.core.agents.list(a.tenant.id))
        agent = next((agent for agent in agents if agent.client_id == client_id), None)
        if agent is None:
            raise AgentNotConnected("This agent holds no grant on this tenant (it may be revoked already).")
        tenant = access.tenant
        return self._render(
            request, "console/revoke_agent.html", user=access.user, tenant=tenant, section="agents", agent=agent,
            action=tenant_url(tenant.id, "agents/revoke"), back=tenant_url(tenant.id, "agents"),
            approved_by=", ".join(agent.approved_by), scopes=" ".join(agent.scopes),
        )  # fmt: skip

    async def revoke_agent(self, request: Request) -> Response:
        """Revoke every grant one agent holds on this tenant; CSRF first, then the write role."""
        form = await self.pages.read_form(request)
        back = tenant_url(request.path_params["tenant"], "agents")
        client_id = str(form.get("client_id") or "")
        await self._as_admin(
            request, lambda a: self.core.agents.revoke(a.tenant.id, client_id, a.actor), next_url=back, write=True
        )
        return RedirectResponse(f"{back}?revoked=1", status_code=303)

    # --- users ------------------------------------------------------------------------------------------

    def _users_query(self, request: Request) -> tuple[str, int]:
        search = (request.query_params.get("q") or "").strip()[:100]
        try:
            page = max(1, int(request.query_params.get("page") or 1))
        except ValueError:
            page = 1
        return search, page

    def _users_in(self, tenant_id: str, search: str, page: int) -> tuple[list[User], int]:
        return self.core.tenant_users.list(tenant_id, query=search or None, page=page, page_size=USERS_PER_PAGE)

    async def users(self, request: Request) -> Response:
        search, page = self._users_query(request)
        access, (found, total) = await self._as_admin(request, lambda a: self._users_in(a.tenant.id, search, page))
        return self._users_page(request, access, found, total)

    def _users_page(
        self, request: Request, access: TenantAdministrator, found: list[User], total: int, *, status: int = 200,
        error: str = "", form: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        search, page = self._users_query(request)
        tenant = access.tenant
        base = tenant_url(tenant.id, "users")

        def page_url(number: int) -> str:
            return f"{base}?{urlencode({'q': search, 'page': number} if search else {'page': number})}"

        return self._render(
            request, "console/users.html", status=status, user=access.user, tenant=tenant, section="users",
            users=[{"user": found_user, "url": user_url(tenant.id, found_user.id)} for found_user in found],
            total=total, search=search, error=error, form=form or {}, may_write=may_write(access.role),
            newer_url=page_url(page - 1) if page > 1 else "",
            more_url=page_url(page + 1) if page * USERS_PER_PAGE < total else "",
        )  # fmt: skip

    async def create_user(self, request: Request) -> Response:
        """Create a user with an email and/or username and a password, as the createUser tool does.

        Two transactions, Argon2id between them: the first checks the write role before any hashing and reads the
        list the form is on (shown again on a refusal); the second is the insert (createUser's)."""
        form = await self.pages.read_form(request)
        fields = {key: str(form.get(key) or "").strip() for key in ("email", "username", "name", "emailVerified")}
        password = str(form.get("password") or "")
        search, page = self._users_query(request)
        access, (listed, total) = await self._as_admin(
            request, lambda a: self._users_in(a.tenant.id, search, page), write=True, writes=False
        )
        try:
            created = await self.core.tenant_users.create(
                access.tenant.id, password=password, actor=access.actor, email=fields["email"] or None,
                username=fields["username"] or None, name=fields["name"] or None,
                email_verified=fields["emailVerified"] == "true",
            )  # fmt: skip
        except IdpError as exc:
            return self._users_page(
                request, access, listed, total, status=exc.status if 400 <= exc.status < 500 else 400,
                error=exc.message, form=fields,
            )  # fmt: skip
        return RedirectResponse(user_url(access.tenant.id, created.id), status_code=303)

    def _user_with_access(self, tenant_id: str, user_id: str) -> tuple[User, UserAccess]:
        """A user of the tenant and their live sessions and consents: what their page shows."""
        found = self._user_in(tenant_id, user_id)
        return found, self.core.agents.user_access(tenant_id, found.id)

    async def user(self, request: Request) -> Response:
        """One user: identifiers, status, live sessions and consents; suspend, reactivate, set a password or
        delete."""
        user_id = request.path_params["user_id"]
        access, (found, user_access) = await self._as_admin(
            request, lambda a: self._user_with_access(a.tenant.id, user_id)
        )
        return self._user_page(request, access, found, user_access)

    def _user_page(
        self, request: Request, access: TenantAdministrator, found: User, user_access: UserAccess, *,
        status: int = 200, password_error: str = "",
    ) -> Response:  # fmt: skip
        tenant = access.tenant
        return self._render(
            request, "console/user.html", status=status, user=access.user, tenant=tenant, section="users",
            person=found, created=_when(found.created_at), may_write=may_write(access.role),
            password_url=user_url(tenant.id, found.id, "password"), password_error=password_error,
            password_set=request.query_params.get("password") == "set",
            sessions=[(_when(signed_in), _when(expires)) for signed_in, expires in user_access.sessions],
            grants=[
                {"client_id": client_id, "name": name, "scope": scope, "at": _when(at)}
                for client_id, name, scope, at in user_access.grants
            ],
            suspension_url=user_url(tenant.id, found.id, "suspension"),
            delete_url=user_url(tenant.id, found.id, "delete"), users_url=tenant_url(tenant.id, "users"),
        )  # fmt: skip

    def _user_next_url(self, request: Request) -> str:
        return user_url(request.path_params["tenant"], request.path_params["user_id"])

    async def suspend_user(self, request: Request) -> Response:
        """Suspend (ends their sessions, grants and tokens at once) or reactivate a user."""
        form = await self.pages.read_form(request)
        suspended = {"suspend": True, "reactivate": False}.get(str(form.get("action") or ""))
        user_id = request.path_params["user_id"]

        def suspend(access: TenantAdministrator) -> None:
            found = self._user_in(access.tenant.id, user_id)
            if suspended is None:
                raise ValidationFailed("Choose suspend or reactivate.")
            self.core.tenant_users.update(access.tenant.id, found.id, UserChanges(suspended=suspended), access.actor)

        access, _ = await self._as_admin(request, suspend, next_url=self._user_next_url(request), write=True)
        return RedirectResponse(user_url(access.tenant.id, user_id), status_code=303)

    async def set_password(self, request: Request) -> Response:
        """Set the user's password (the sign-up rules; typed twice), as setUserPassword does: it signs them out
        everywhere and revokes their applications' tokens. CSRF first, then the write role.

        Two transactions, Argon2id between them: the first checks the write role before any hashing and reads the
        user's page (shown again on a refusal); the second is setUserPassword's write."""
        form = await self.pages.read_form(request)
        user_id = request.path_params["user_id"]
        access, (found, user_access) = await self._as_admin(
            request, lambda a: self._user_with_access(a.tenant.id, user_id), next_url=self._user_next_url(request),
            write=True, writes=False,
        )  # fmt: skip
        password = str(form.get("password") or "")[:MAX_PASSWORD_FIELD]
        if password != str(form.get("password_confirm") or "")[:MAX_PASSWORD_FIELD]:
            error = "The two passwords are not the same. Type the same password in both fields."
            return self._user_page(request, access, found, user_access, status=400, password_error=error)
        try:  # one hop: the rules and Argon2id outside any transaction, then the one write
            await run_in_threadpool(self.core.password_recovery.set_for_user_by_admin, found, password, access.actor)
        except IdpError as exc:
            if exc.status >= 500 or isinstance(exc, UserNotFound):
                raise
            return self._user_page(request, access, found, user_access, status=exc.status, password_error=exc.message)
        return RedirectResponse(user_url(access.tenant.id, found.id) + "?password=set#password", status_code=303)

    async def confirm_delete_user(self, request: Request) -> Response:
        user_id = request.path_params["user_id"]
        access, found = await self._as_admin(
            request, lambda a: self._user_in(a.tenant.id, user_id), next_url=self._user_next_url(request)
        )
        tenant = access.tenant
        return self._render(
            request, "console/delete_user.html", user=access.user, tenant=tenant, section="users", person=found,
            action=user_url(tenant.id, found.id, "delete"), back=user_url(tenant.id, found.id),
        )  # fmt: skip

    async def delete_user(self, request: Request) -> Response:
        """Delete a user, their sessions, grants and tokens; CSRF first, then the write role."""
        await self.pages.read_form(request)
        user_id = request.path_params["user_id"]

        def delete(access: TenantAdministrator) -> None:
            found = self._user_in(access.tenant.id, user_id)
            self.core.tenant_users.delete(access.tenant.id, found.id, access.actor)

        access, _ = await self._as_admin(request, delete, next_url=self._user_next_url(request), write=True)
        return RedirectResponse(tenant_url(access.tenant.id, "users"), status_code=303)


_SETTINGS_FIELDS = ("name", "description", "redirect_uris", "post_logout_redirect_uris", "cors_origins", "id_token_alg")
_SETTINGS_LISTS = ("redirect_uris", "post_logout_redirect_uris", "cors_origins")
_SETTINGS_MAX = 65536  # the core checks each field's own limits


def _settings_form(application: Application) -> dict[str, str]:
    """The settings form's values: lists one entry a line."""
    return {
        "name": application.name, "description": application.description,
        "redirect_uris": "\n".join(application.redirect_uris),
        "post_logout_redirect_uris": "\n".join(application.post_logout_redirect_uris),
        "cors_origins": "\n".join(application.cors_origins), "id_token_alg": application.id_token_alg,
    }  # fmt: skip


def _when(moment: datetime | None, never: str = "Never") -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else never


def _secret_row(secret: SecretInfo, tenant_id: str | None = None, application_id: str | None = None) -> dict[str, str]:
    status = "Active" if secret.active else ("Revoked" if secret.revoked_at else "Expired")
    revoke = secret_url(tenant_id, application_id, secret.id, "revoke") if tenant_id and application_id else ""
    return {
        "id": secret.id,
        "kind": secret.kind.capitalize(),
        "revoke_url": revoke if secret.revoked_at is None else "",
        "revoked": _when(secret.revoked_at, ""),
        "masked": f"••••{secret.last_four}",
        "created": _when(secret.created_at),
        "expires": _when(secret.expires_at),
        "status": status,
    }


_AUDIT_FILTERS = ("actor", "agent", "tool", "target", "since", "limit", "before")


def _audit_query(filters: dict[str, str]) -> tuple[AuditQuery, int]:
    """The audit query for the page's filters (one more row than shown, to know whether older ones exist)."""
    for key in ("actor", "agent", "target"):
        if len(filters[key]) > _FILTER_MAX:
            raise ValidationFailed(f"The {key} filter is too long: at most {_FILTER_MAX} characters.")
    tool = filters["tool"]
    if tool and not _TOOL.match(tool):
        raise ValidationFailed("A tool is its MCP name, such as createApplication (letters and digits).")
    since: datetime | None = None
    if filters["since"]:
        try:
            since = datetime.fromisoformat(filters["since"].replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed("Since is a date and time, such as 2026-12-01T09:30 (UTC).") from None
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since  # the form's local time is UTC
    limit = int(filters["limit"]) if filters["limit"] in {str(n) for n in AUDIT_LIMITS} else AUDIT_LIMITS[1]
    before = int(filters["before"]) if filters["before"].isdigit() and len(filters["before"]) < 19 else None
    query = AuditQuery(
        limit=limit + 1, since=since, actor=filters["actor"] or None, agent=filters["agent"] or None,
        action=f"tool.{tool}" if tool else None, target_id=filters["target"] or None, before=before,
    )  # fmt: skip
    return query, limit


def _audit_row(entry: AuditEntry, people: dict[str, str]) -> dict[str, Any]:
    details = [
        (key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True))
        for key, value in sorted(entry.details.items())
    ]
    return {
        "id": entry.id,
        "at": as_utc(entry.at).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "action": entry.action,
        "outcome": entry.outcome,
        "human": people.get(entry.actor_sub, entry.actor_sub) if entry.actor_sub else "",
        "human_id": entry.actor_sub or "",
        "agent": entry.actor_client_name or entry.actor_client_id or "",
        "agent_id": entry.actor_client_id or "",
        "target": " ".join(part for part in (entry.target_type, entry.target_id) if part),
        "details": details,
    }
