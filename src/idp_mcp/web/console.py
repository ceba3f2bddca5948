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
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.agents import AgentNotConnected
from idp_mcp.core.applications import Application, ApplicationChanges, ApplicationNotFound
from idp_mcp.core.audit import AuditQuery
from idp_mcp.core.secrets import SecretInfo, SecretNotFound
from idp_mcp.core.tenants import ReadOnlyMember, may_write
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import ADMIN_TENANT_ID, Actor, AuditEntry, Tenant, User, as_utc
from idp_mcp.errors import Forbidden, IdpError, UserNotFound, ValidationFailed
from idp_mcp.settings import Settings
from idp_mcp.web.pages import Pages
from idp_mcp.web.security import run_own_scripts

Handler = Callable[[Request], Awaitable[Response]]

TYPE_LABELS = {
    "traditional": "Traditional web app",
    "spa": "Single-page app",
    "native": "Native app",
    "m2m": "Machine to machine",
}
NOT_MEMBER = "You are not an administrator of this tenant."
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

    async def _admin(self, request: Request, next_url: str | None = None) -> User:
        session = await self.pages._session(request)
        user = await run_in_threadpool(self.core.users.get, ADMIN_TENANT_ID, session.user_id) if session else None
        if user is None:
            raise _SignInFirst(next_url or request.url.path)
        return user

    async def _tenant(
        self, request: Request, next_url: str | None = None, *, write: bool = False
    ) -> tuple[User, Tenant]:
        """The administrator and the tenant in the path, which they must administer (else 403, whether or not
        the tenant exists) and, for a ``write``, with a role that may change it (else 403). Their role is kept in
        ``request.state.role`` for the page to offer only what it allows."""
        user = await self._admin(request, next_url)
        tenant_id = request.path_params["tenant"]
        try:
            request.state.role = await run_in_threadpool(
                lambda: self.core.tenants.require_member(tenant_id, user.id, write=write)
            )
        except ReadOnlyMember:
            raise
        except Forbidden:
            raise Forbidden(NOT_MEMBER) from None
        return user, await run_in_threadpool(self.core.tenants.get, tenant_id)

    async def _application(
        self, request: Request, next_url: str | None = None, *, write: bool = False
    ) -> tuple[User, Tenant, Application]:
        user, tenant = await self._tenant(request, next_url, write=write)
        try:
            application = await run_in_threadpool(
                self.core.applications.get, tenant.id, request.path_params["application_id"]
            )
        except ApplicationNotFound:
            raise ApplicationNotFound(NO_APPLICATION) from None
        return user, tenant, application

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
        user = await self._admin(request)
        memberships = await run_in_threadpool(self.core.tenants.memberships, user.id)
        if len(memberships) == 1:
            return RedirectResponse(applications_url(memberships[0][0].id), status_code=303)
        links = {tenant.id: applications_url(tenant.id) for tenant, _role in memberships}
        return self._render(request, "console/tenants.html", user=user, memberships=memberships, links=links)

    async def applications(self, request: Request) -> Response:
        user, tenant = await self._tenant(request)
        applications = await run_in_threadpool(self.core.applications.list, tenant.id)
        return self._render(
            request, "console/applications.html", user=user, tenant=tenant, applications=applications,
            links={app.id: application_url(tenant.id, app.id) for app in applications},
        )  # fmt: skip

    async def application(self, request: Request) -> Response:
        user, tenant, application = await self._application(request)
        return await self._application_page(request, user, tenant, application)

    async def _application_page(
        self, request: Request, user: User, tenant: Tenant, application: Application, *, status: int = 200,
        error: str = "", form: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        secrets = await run_in_threadpool(self.core.secrets.list, tenant.id, application.id)
        issuer = f"{self.settings.public_url}/t/{tenant.id}/oidc"
        return self._render(
            request, "console/application.html", status=status, user=user, tenant=tenant, application=application,
            secrets=[_secret_row(secret, tenant.id, application.id) for secret in secrets], issuer=issuer,
            may_write=may_write(request.state.role), discovery=f"{issuer}/.well-known/openid-configuration",
            settings_form=form or _settings_form(application), settings_error=error,
            saved=request.query_params.get("saved") == "1",
        )  # fmt: skip

    async def save_application(self, request: Request) -> Response:
        """Change an application's settings, as the updateApplication tool does (same checks, same audit row, the
        person as actor); a refusal shows the core's sentence with the values as typed. CSRF first."""
        form = await self.pages.read_form(request)
        back = request.url.path.removesuffix("/settings")
        user, tenant, application = await self._application(request, next_url=back, write=True)
        typed = {key: str(form.get(key) or "").replace("\r\n", "\n")[:_SETTINGS_MAX] for key in _SETTINGS_FIELDS}
        lists = {key: [line.strip() for line in typed[key].split("\n") if line.strip()] for key in _SETTINGS_LISTS}
        signs_in = application.type != "m2m"
        changes = ApplicationChanges(
            name=typed["name"].strip(), description=typed["description"].strip(),
            redirect_uris=lists["redirect_uris"] if signs_in else None,
            post_logout_redirect_uris=lists["post_logout_redirect_uris"] if signs_in else None,
            cors_origins=lists["cors_origins"] if application.type == "spa" else None,
            id_token_alg="RS256" if typed["id_token_alg"] == "RS256" else "ES256",
        )  # fmt: skip
        actor = Actor(tenant_id=tenant.id, sub=user.id)  # the human, in the browser: no agent
        try:
            await run_in_threadpool(self.core.applications.change, tenant.id, application.id, changes, actor)
        except IdpError as exc:
            status = exc.status if 400 <= exc.status < 500 else 400
            return await self._application_page(
                request, user, tenant, application, status=status, error=exc.message, form=typed
            )
        return RedirectResponse(f"{back}?saved=1", status_code=303)

    async def create_secret(self, request: Request) -> Response:
        """Create a production secret, then redirect to the page that shows its value once (POST-redirect-GET: a
        reload shows the page again, never creates a second secret). The CSRF token is checked first."""
        await self.pages.read_form(request)
        back = request.url.path.removesuffix("/secrets")
        user, tenant, application = await self._application(request, next_url=back, write=True)
        session_id = self.pages.cookies.session_id(request)
        assert session_id is not None  # _application found the session
        actor = Actor(tenant_id=tenant.id, sub=user.id)  # the human, in the browser: no agent
        secret_id = await run_in_threadpool(
            self.core.secrets.create_production_to_reveal, tenant.id, application.id, actor, session_id
        )
        return RedirectResponse(secret_url(tenant.id, application.id, secret_id, "reveal"), status_code=303)

    async def reveal_secret(self, request: Request) -> Response:
        """Show a new production secret's value, the first time only, and only to the session that created it."""
        user, tenant, application = await self._application(request)
        secret_id = request.path_params["secret_id"]
        issued = await run_in_threadpool(
            self.core.secrets.take_reveal, tenant.id, application.id, secret_id,
            self.pages.cookies.session_id(request) or "",
        )  # fmt: skip
        response = self._render(
            request, "console/secret_created.html", user=user, tenant=tenant, application=application,
            secret=issued, secret_id=secret_id,
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"
        return run_own_scripts(response)  # the copy button

    async def confirm_revoke(self, request: Request) -> Response:
        """Ask before revoking a secret: software that still uses it stops getting tokens at once."""
        user, tenant, application = await self._application(request)
        secret = await self._secret(tenant.id, application.id, request.path_params["secret_id"])
        return self._render(
            request, "console/revoke_secret.html", user=user, tenant=tenant, application=application,
            secret=_secret_row(secret), action=secret_url(tenant.id, application.id, secret.id, "revoke"),
        )  # fmt: skip

    async def revoke_secret(self, request: Request) -> Response:
        """Revoke one secret (production or temporary) by id; the CSRF token is checked first."""
        await self.pages.read_form(request)
        back = request.url.path.rsplit("/secrets/", 1)[0]
        user, tenant, application = await self._application(request, next_url=back, write=True)
        actor = Actor(tenant_id=tenant.id, sub=user.id)
        try:
            await run_in_threadpool(
                partial(self.core.secrets.revoke, production=True),
                tenant.id, application.id, request.path_params["secret_id"], actor,
            )  # fmt: skip
        except SecretNotFound:
            raise SecretNotFound(NO_SECRET) from None
        return RedirectResponse(application_url(tenant.id, application.id), status_code=303)

    # --- audit log -------------------------------------------------------------------------------------

    async def audit(self, request: Request) -> Response:
        """The tenant's audit log, newest first, narrowed by the filters in the query string; an "older" link pages
        on from the last row shown."""
        user, tenant = await self._tenant(request)
        filters = {key: (request.query_params.get(key) or "").strip() for key in _AUDIT_FILTERS}
        try:
            query, limit = _audit_query(filters)
        except ValidationFailed as exc:
            return self._render(
                request, "console/audit.html", status=400, user=user, tenant=tenant, section="audit",
                filters=filters, limits=AUDIT_LIMITS, error=exc.message, rows=[], older_url="",
            )  # fmt: skip
        entries, people = await run_in_threadpool(self.core.audit.search_with_people, tenant.id, query)
        older_url = ""
        if len(entries) > limit:
            entries = entries[:limit]
            kept = {key: value for key, value in filters.items() if value and key != "before"}
            older_url = f"{tenant_url(tenant.id, 'audit')}?{urlencode({**kept, 'before': entries[-1].id})}"
        return self._render(
            request, "console/audit.html", user=user, tenant=tenant, section="audit", filters=filters,
            limits=AUDIT_LIMITS, error="", rows=[_audit_row(entry, people) for entry in entries], older_url=older_url,
        )  # fmt: skip

    # --- connected agents -------------------------------------------------------------------------------

    async def agents(self, request: Request) -> Response:
        """The MCP clients holding grants that act on this tenant, who approved them, and revoking one."""
        user, tenant = await self._tenant(request)
        agents = await run_in_threadpool(self.core.agents.list, tenant.id)
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
            request, "console/agents.html", user=user, tenant=tenant, section="agents", agents=rows,
            may_write=may_write(request.state.role), revoked=request.query_params.get("revoked") == "1",
        )  # fmt: skip

    async def confirm_revoke_agent(self, request: Request) -> Response:
        """Ask before revoking an agent: its next call to /mcp is refused and it must be connected again."""
        user, tenant = await self._tenant(request)
        client_id = request.query_params.get("client", "")
        agents = await run_in_threadpool(self.core.agents.list, tenant.id)
        agent = next((agent for agent in agents if agent.client_id == client_id), None)
        if agent is None:
            raise AgentNotConnected("This agent holds no grant on this tenant (it may be revoked already).")
        return self._render(
            request, "console/revoke_agent.html", user=user, tenant=tenant, section="agents", agent=agent,
            action=tenant_url(tenant.id, "agents/revoke"), back=tenant_url(tenant.id, "agents"),
            approved_by=", ".join(agent.approved_by), scopes=" ".join(agent.scopes),
        )  # fmt: skip

    async def revoke_agent(self, request: Request) -> Response:
        """Revoke every grant one agent holds on this tenant; CSRF first, then the write role."""
        form = await self.pages.read_form(request)
        back = tenant_url(request.path_params["tenant"], "agents")
        user, tenant = await self._tenant(request, next_url=back, write=True)
        actor = Actor(tenant_id=tenant.id, sub=user.id)
        await run_in_threadpool(self.core.agents.revoke, tenant.id, str(form.get("client_id") or ""), actor)
        return RedirectResponse(f"{back}?revoked=1", status_code=303)

    # --- users ------------------------------------------------------------------------------------------

    async def users(self, request: Request) -> Response:
        user, tenant = await self._tenant(request)
        return await self._users_page(request, user, tenant)

    async def _users_page(
        self, request: Request, user: User, tenant: Tenant, *, status: int = 200, error: str = "",
        form: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        search = (request.query_params.get("q") or "").strip()[:100]
        try:
            page = max(1, int(request.query_params.get("page") or 1))
        except ValueError:
            page = 1
        found, total = await run_in_threadpool(
            partial(self.core.tenant_users.list, tenant.id, query=search or None, page=page, page_size=USERS_PER_PAGE)
        )
        base = tenant_url(tenant.id, "users")

        def page_url(number: int) -> str:
            return f"{base}?{urlencode({'q': search, 'page': number} if search else {'page': number})}"

        return self._render(
            request, "console/users.html", status=status, user=user, tenant=tenant, section="users",
            users=[{"user": found_user, "url": user_url(tenant.id, found_user.id)} for found_user in found],
            total=total, search=search, error=error, form=form or {}, may_write=may_write(request.state.role),
            newer_url=page_url(page - 1) if page > 1 else "",
            more_url=page_url(page + 1) if page * USERS_PER_PAGE < total else "",
        )  # fmt: skip

    async def create_user(self, request: Request) -> Response:
        """Create a user with an email and/or username and a password, as the createUser tool does."""
        form = await self.pages.read_form(request)
        user, tenant = await self._tenant(request, write=True)
        fields = {key: str(form.get(key) or "").strip() for key in ("email", "username", "name", "emailVerified")}
        password = str(form.get("password") or "")
        actor = Actor(tenant_id=tenant.id, sub=user.id)
        try:
            created = await self.core.tenant_users.create(
                tenant.id, password=password, actor=actor, email=fields["email"] or None,
                username=fields["username"] or None, name=fields["name"] or None,
                email_verified=fields["emailVerified"] == "true",
            )  # fmt: skip
        except IdpError as exc:
            return await self._users_page(
                request, user, tenant, status=exc.status if 400 <= exc.status < 500 else 400, error=exc.message,
                form=fields,
            )  # fmt: skip
        return RedirectResponse(user_url(tenant.id, created.id), status_code=303)

    async def _tenant_user(self, request: Request, *, write: bool = False) -> tuple[User, Tenant, User]:
        next_url = user_url(request.path_params["tenant"], request.path_params["user_id"])
        admin, tenant = await self._tenant(request, next_url, write=write)
        try:
            found = await run_in_threadpool(self.core.tenant_users.get, tenant.id, request.path_params["user_id"])
        except UserNotFound:
            raise UserNotFound(NO_USER) from None
        return admin, tenant, found

    async def user(self, request: Request) -> Response:
        """One user: identifiers, status, live sessions and consents; suspend, reactivate, set a password or
        delete."""
        admin, tenant, found = await self._tenant_user(request)
        return await self._user_page(request, admin, tenant, found)

    async def _user_page(
        self, request: Request, admin: User, tenant: Tenant, found: User, *, status: int = 200,
        password_error: str = "",
    ) -> Response:  # fmt: skip
        access = await run_in_threadpool(self.core.agents.user_access, tenant.id, found.id)
        return self._render(
            request, "console/user.html", status=status, user=admin, tenant=tenant, section="users", person=found,
            created=_when(found.created_at), may_write=may_write(request.state.role),
            password_url=user_url(tenant.id, found.id, "password"), password_error=password_error,
            password_set=request.query_params.get("password") == "set",
            sessions=[(_when(signed_in), _when(expires)) for signed_in, expires in access.sessions],
            grants=[
                {"client_id": client_id, "name": name, "scope": scope, "at": _when(at)}
                for client_id, name, scope, at in access.grants
            ],
            suspension_url=user_url(tenant.id, found.id, "suspension"),
            delete_url=user_url(tenant.id, found.id, "delete"), users_url=tenant_url(tenant.id, "users"),
        )  # fmt: skip

    async def suspend_user(self, request: Request) -> Response:
        """Suspend (ends their sessions, grants and tokens at once) or reactivate a user."""
        form = await self.pages.read_form(request)
        admin, tenant, found = await self._tenant_user(request, write=True)
        suspended = {"suspend": True, "reactivate": False}.get(str(form.get("action") or ""))
        if suspended is None:
            raise ValidationFailed("Choose suspend or reactivate.")
        actor = Actor(tenant_id=tenant.id, sub=admin.id)
        await run_in_threadpool(
            self.core.tenant_users.update, tenant.id, found.id, UserChanges(suspended=suspended), actor
        )
        return RedirectResponse(user_url(tenant.id, found.id), status_code=303)

    async def set_password(self, request: Request) -> Response:
        """Set the user's password (the sign-up rules; typed twice), as setUserPassword does: it signs them out
        everywhere and revokes their applications' tokens. CSRF first, then the write role."""
        form = await self.pages.read_form(request)
        admin, tenant, found = await self._tenant_user(request, write=True)
        password = str(form.get("password") or "")[:MAX_PASSWORD_FIELD]
        if password != str(form.get("password_confirm") or "")[:MAX_PASSWORD_FIELD]:
            error = "The two passwords are not the same. Type the same password in both fields."
            return await self._user_page(request, admin, tenant, found, status=400, password_error=error)
        actor = Actor(tenant_id=tenant.id, sub=admin.id)
        try:  # one hop: Argon2id, then the one transaction
            await run_in_threadpool(self.core.password_recovery.set_by_admin, tenant.id, found.id, password, actor)
        except IdpError as exc:
            if exc.status >= 500 or isinstance(exc, UserNotFound):
                raise
            return await self._user_page(request, admin, tenant, found, status=exc.status, password_error=exc.message)
        return RedirectResponse(user_url(tenant.id, found.id) + "?password=set#password", status_code=303)

    async def confirm_delete_user(self, request: Request) -> Response:
        admin, tenant, found = await self._tenant_user(request)
        return self._render(
            request, "console/delete_user.html", user=admin, tenant=tenant, section="users", person=found,
            action=user_url(tenant.id, found.id, "delete"), back=user_url(tenant.id, found.id),
        )  # fmt: skip

    async def delete_user(self, request: Request) -> Response:
        """Delete a user, their sessions, grants and tokens; CSRF first, then the write role."""
        await self.pages.read_form(request)
        admin, tenant, found = await self._tenant_user(request, write=True)
        actor = Actor(tenant_id=tenant.id, sub=admin.id)
        await run_in_threadpool(self.core.tenant_users.delete, tenant.id, found.id, actor)
        return RedirectResponse(tenant_url(tenant.id, "users"), status_code=303)

    async def _secret(self, tenant_id: str, application_id: str, secret_id: str) -> SecretInfo:
        secrets = await run_in_threadpool(self.core.secrets.list, tenant_id, application_id)
        found = next((secret for secret in secrets if secret.id == secret_id), None)
        if found is None:
            raise SecretNotFound(NO_SECRET)
        return found


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
