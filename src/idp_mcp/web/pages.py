"""Page handlers. Each one parses the form, calls the core or the authorization flow, and renders."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.sessions import BrowserSession, Interaction
from idp_mcp.core.setup_codes import code_required
from idp_mcp.core.tenants import withheld_scopes
from idp_mcp.domain import ADMIN_TENANT_ID, SCOPE_DESCRIPTIONS, SCOPE_WRITE
from idp_mcp.errors import CsrfFailed, IdpError, InteractionExpired, SetupAlreadyDone
from idp_mcp.oauth.flow import AuthorizationFlow
from idp_mcp.web.session import CookieJar

HERE = Path(__file__).parent
# Scopes a user may untick on the consent page; the rest come with the connection.
OPTIONAL_SCOPES = frozenset({SCOPE_WRITE})
MAX_FIELD = 1024
NO_PAGE = "There is no page at this address. It may have moved, or the link may be mistyped."
_TENANT_PAGE = re.compile(r"^/t/([A-Za-z0-9_-]{1,64})/")
EXPIRED = "This sign-in request expired or was already used. Start again from your app."


def safe_next(value: str | None) -> str:
    """A same-site path to return to; anything else (absolute URLs, //host) becomes '/'."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 2048:
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def client_host(request: Request) -> str | None:
    """The client's address, for rate limits. Behind a proxy, uvicorn puts the X-Forwarded-For address here, but
    only for proxies it trusts (``--forwarded-allow-ips``); a header from anyone else is ignored."""
    return request.client.host if request.client else None


class Pages:
    def __init__(self, core: IdentityCore, flow: AuthorizationFlow, cookies: CookieJar, mcp_url: str) -> None:
        self.core = core
        self.flow = flow
        self.cookies = cookies
        self.mcp_url = mcp_url
        # Set by the composition root: renders an error of a tenant's pages in its branding (web.tenant_errors).
        self.tenant_error_page: Callable[[Request, str, str, str, int], Awaitable[Response]] | None = None
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            auto_reload=False,
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/sign-in", self.sign_in_page, methods=["GET"]),
            Route("/sign-in", self.sign_in_submit, methods=["POST"]),
            Route("/setup", self.setup_page, methods=["GET"]),
            Route("/setup", self.setup_submit, methods=["POST"]),
            Route("/sign-out", self.sign_out, methods=["POST"]),
            Route("/interaction/{id}", self.interaction_page, methods=["GET"]),
            Route("/interaction/{id}/consent", self.consent_submit, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    # --- rendering ----------------------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("csrf_token", self.cookies.csrf_token(request))
        html = self.templates.get_template(template).render(request=request, **context)
        response = HTMLResponse(html, status_code=status)
        self.cookies.ensure_csrf(request, response)
        return response

    async def error_page(self, request: Request, error: str, description: str, status: int) -> Response:
        """The error page; on a tenant's issuer (any page under /t/<tenant>/) in that tenant's branding."""
        tenant_id = request.path_params.get("tenant")
        if self.tenant_error_page is not None and tenant_id and request.url.path.startswith("/t/"):
            return await self.tenant_error_page(request, tenant_id, error, description, status)
        return self.render(request, "error.html", status=status, error=error, description=description)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        """No route matched: a styled page for a browser (it asks for HTML), the plain answer for anything else
        (API and MCP clients keep getting what they always got)."""
        if "text/html" not in request.headers.get("accept", ""):
            return PlainTextResponse("Not Found", status_code=404)
        tenant = _TENANT_PAGE.match(request.url.path)
        if tenant and self.tenant_error_page is not None:  # a tenant's users: the tenant's look
            return await self.tenant_error_page(request, tenant.group(1), "not_found", NO_PAGE, 404)
        return self.render(request, "not_found.html", status=404)

    async def _session(self, request: Request) -> BrowserSession | None:
        session = await run_in_threadpool(self.core.sessions.get, self.cookies.session_id(request))
        return session if session and session.tenant_id == ADMIN_TENANT_ID else None

    async def signed_in(self, request: Request) -> bool:
        """Whether the browser has an administrator session (what ``prompt=none`` at the MCP issuer is told)."""
        return await self._session(request) is not None

    async def read_form(self, request: Request) -> dict[str, Any]:
        form = await request.form()
        self.cookies.check_csrf(request, _text(form.get("csrf_token")))
        return {key: form.getlist(key) if key == "scope" else _text(form.get(key)) for key in form}

    # --- home, sign-in, setup, sign-out ---------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        session = await self._session(request)
        user = await run_in_threadpool(self.core.users.get, ADMIN_TENANT_ID, session.user_id) if session else None
        admins = await run_in_threadpool(self.core.users.administrators_exist)
        return self.render(request, "home.html", user=user, mcp_url=self.mcp_url, needs_setup=not admins)

    async def sign_in_page(self, request: Request) -> Response:
        return await self._render_sign_in(request, safe_next(request.query_params.get("next")))

    async def _render_sign_in(
        self,
        request: Request,
        next_url: str,
        error: str | None = None,
        identifier: str = "",
        status: int = 200,
    ) -> Response:
        admins = await run_in_threadpool(self.core.users.administrators_exist)
        return self.render(
            request, "sign_in.html", status=status, next_url=next_url, error=error, identifier=identifier,
            needs_setup=not admins, setup_url=f"/setup?next={quote(next_url)}",
        )  # fmt: skip

    async def sign_in_submit(self, request: Request) -> Response:
        try:
            form = await self.read_form(request)
        except CsrfFailed as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        next_url = safe_next(form.get("next"))
        identifier = (form.get("identifier") or "")[:MAX_FIELD]
        try:
            user = await self.core.users.authenticate(
                ADMIN_TENANT_ID,
                identifier,
                (form.get("password") or "")[:MAX_FIELD],
                client_address=client_host(request),
                device=self.cookies.device_id(request),
            )
        except IdpError as exc:
            return await self._render_sign_in(request, next_url, exc.message, identifier, status=exc.status)
        return await self.start_session(request, user.id, RedirectResponse(next_url, status_code=303))

    async def start_session(
        self, request: Request, user_id: str, response: Response, tenant_id: str = ADMIN_TENANT_ID
    ) -> Response:
        """Sign a user who just proved who they are in: a session, and this browser becomes a known device."""
        device = self.cookies.device_for_sign_in(request)
        raw = await run_in_threadpool(lambda: self.core.sessions.start(tenant_id, user_id, device=device))
        self.cookies.set_session(response, raw, None if tenant_id == ADMIN_TENANT_ID else tenant_id)
        self.cookies.set_device(response, device)
        return response

    def _setup_code_required(self, request: Request) -> bool:
        return code_required(self.core.settings.public_url, client_host(request))

    def _render_setup(self, request: Request, next_url: str, *, email: str = "", error: str | None = None,
                      status: int = 200) -> HTMLResponse:  # fmt: skip
        return self.render(
            request, "setup.html", status=status, next_url=next_url, email=email, error=error,
            code_required=self._setup_code_required(request),
        )  # fmt: skip

    async def setup_page(self, request: Request) -> Response:
        next_url = safe_next(request.query_params.get("next"))
        if await run_in_threadpool(self.core.users.administrators_exist):
            return RedirectResponse(f"/sign-in?next={quote(next_url)}", status_code=303)
        return self._render_setup(request, next_url)

    async def setup_submit(self, request: Request) -> Response:
        try:
            form = await self.read_form(request)
        except CsrfFailed as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        next_url = safe_next(form.get("next"))
        email = (form.get("email") or "")[:MAX_FIELD]
        password = (form.get("password") or "")[:MAX_FIELD]
        if await run_in_threadpool(self.core.users.administrators_exist):
            done = SetupAlreadyDone("An administrator exists already: sign in instead.")
            return self._render_setup(request, next_url, email=email, error=done.message, status=done.status)
        if self._setup_code_required(request):
            code = (form.get("setup_code") or "")[:MAX_FIELD]
            if not code or not await run_in_threadpool(self.core.setup_codes.verify, code):
                error = "Enter the one-time setup code printed on the server's console when it started."
                return self._render_setup(request, next_url, email=email, error=error, status=403)
        if password != (form.get("password_confirm") or "")[:MAX_FIELD]:
            return self._render_setup(request, next_url, email=email, error="The passwords do not match.", status=400)
        try:
            user = await self.core.users.create_administrator(email, password, first_only=True)
        except IdpError as exc:
            return self._render_setup(request, next_url, email=email, error=exc.message, status=exc.status)
        await run_in_threadpool(self.core.setup_codes.forget)
        return await self.start_session(request, user.id, RedirectResponse(next_url, status_code=303))

    async def sign_out(self, request: Request) -> Response:
        try:
            form = await self.read_form(request)
        except CsrfFailed as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        await run_in_threadpool(self.core.sessions.end, self.cookies.session_id(request))
        response = RedirectResponse(safe_next(form.get("next")), status_code=303)
        self.cookies.clear_session(response)
        return response

    # --- the authorization interaction ------------------------------------------------------------------

    async def _interaction(self, request: Request) -> Interaction | None:
        interaction = await run_in_threadpool(self.core.sessions.get_interaction, request.path_params["id"])
        if interaction is None or interaction.tenant_id != ADMIN_TENANT_ID:
            return None
        await self.flow.server.prefetch_client(interaction.client_id)  # its document, if due again: not in a thread
        return interaction

    async def interaction_page(self, request: Request) -> Response:
        interaction = await self._interaction(request)
        if interaction is None:
            return await self.error_page(request, "interaction.expired", EXPIRED, 410)
        session = await self._session(request)
        if session is None:
            return await self._render_sign_in(request, request.url.path)
        return await self._render_consent(request, interaction, session)

    async def _render_consent(
        self, request: Request, interaction: Interaction, session: BrowserSession, error: str | None = None
    ) -> Response:
        try:
            consent = await run_in_threadpool(self.flow.describe, interaction)
        except InteractionExpired as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        user = await run_in_threadpool(self.core.users.get, ADMIN_TENANT_ID, session.user_id)
        memberships = await run_in_threadpool(self.core.tenants.memberships, session.user_id)
        scopes = [
            {"name": s, "description": SCOPE_DESCRIPTIONS.get(s, s), "optional": s in OPTIONAL_SCOPES}
            for s in consent.scopes
        ]
        return self.render(
            request, "consent.html", consent=consent, client=consent.client, user=user, scopes=scopes,
            tenants=memberships, interaction_id=interaction.id, error=error,
            redirect_host=urlsplit(consent.redirect_uri).netloc or consent.redirect_uri.split(":", 1)[0] + ":",
        )  # fmt: skip

    async def consent_submit(self, request: Request) -> Response:
        try:
            form = await self.read_form(request)
        except CsrfFailed as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        interaction = await self._interaction(request)
        if interaction is None:
            return await self.error_page(
                request,
                "interaction.expired",
                "This sign-in request expired. Start again from your app.",
                410,
            )
        session = await self._session(request)
        if session is None:
            return await self._render_sign_in(request, f"/interaction/{interaction.id}")
        try:
            if form.get("action") != "approve":
                location = await run_in_threadpool(self.flow.deny, interaction)
                return RedirectResponse(location, status_code=303)
            memberships = await run_in_threadpool(self.core.tenants.memberships, session.user_id)
            roles = {tenant.id: role for tenant, role in memberships}
            tenant_id = form.get("tenant") or (next(iter(roles)) if len(roles) == 1 else "")
            if tenant_id not in roles:
                return await self._render_consent(request, interaction, session, "Choose a tenant you administer.")
            consent = await run_in_threadpool(self.flow.describe, interaction)
            ticked = set(form.get("scope") or [])
            withheld = withheld_scopes(roles[tenant_id])  # a read-only member cannot hand out write access
            scopes = [s for s in consent.scopes if (s not in OPTIONAL_SCOPES or s in ticked) and s not in withheld]
            location = await run_in_threadpool(
                lambda: self.flow.approve(
                    interaction, user_id=session.user_id, auth_time=session.auth_time, scopes=scopes,
                    acting_tenant_id=tenant_id,
                )
            )  # fmt: skip
        except InteractionExpired as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        return RedirectResponse(location, status_code=303)


def _text(value: Any) -> str | None:
    # A value holding NUL counts as not sent: no browser sends one, and PostgreSQL refuses NUL in text.
    return value if isinstance(value, str) and "\x00" not in value else None
