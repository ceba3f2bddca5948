"""The administrators' web console: their tenants, each tenant's applications, and their secrets (production ones
created and shown once, any one revoked by id).

It reuses the pages' rendering, error page, session and CSRF-checked form parsing. Every tenant page checks
membership first, and every application is read by (tenant, id), so one tenant's data never shows in another's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.applications import Application, ApplicationNotFound
from idp_mcp.core.secrets import SecretInfo, SecretNotFound
from idp_mcp.core.tenants import ReadOnlyMember, may_write
from idp_mcp.domain import ADMIN_TENANT_ID, Actor, Tenant, User
from idp_mcp.errors import Forbidden, IdpError
from idp_mcp.settings import Settings
from idp_mcp.web.pages import Pages

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


class _SignInFirst(Exception):
    """The visitor is not signed in as an administrator: send them to sign in, then back to ``next_url``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def applications_url(tenant_id: str) -> str:
    return f"/console/t/{quote(tenant_id, safe='')}/applications"


def application_url(tenant_id: str, application_id: str) -> str:
    return f"{applications_url(tenant_id)}/{quote(application_id, safe='')}"


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
            Route(f"{application}/secrets", self._page(self.create_secret), methods=["POST"]),
            Route(f"{application}/secrets/{{secret_id}}/reveal", self._page(self.reveal_secret), methods=["GET"]),
            Route(f"{application}/secrets/{{secret_id}}/revoke", self._page(self.confirm_revoke), methods=["GET"]),
            Route(f"{application}/secrets/{{secret_id}}/revoke", self._page(self.revoke_secret), methods=["POST"]),
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
        secrets = await run_in_threadpool(self.core.secrets.list, tenant.id, application.id)
        issuer = f"{self.settings.public_url}/t/{tenant.id}/oidc"
        return self._render(
            request, "console/application.html", user=user, tenant=tenant, application=application,
            secrets=[_secret_row(secret, tenant.id, application.id) for secret in secrets], issuer=issuer,
            may_write=may_write(request.state.role),
            discovery=f"{issuer}/.well-known/openid-configuration",
        )  # fmt: skip

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
        return response

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

    async def _secret(self, tenant_id: str, application_id: str, secret_id: str) -> SecretInfo:
        secrets = await run_in_threadpool(self.core.secrets.list, tenant_id, application_id)
        found = next((secret for secret in secrets if secret.id == secret_id), None)
        if found is None:
            raise SecretNotFound(NO_SECRET)
        return found


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
