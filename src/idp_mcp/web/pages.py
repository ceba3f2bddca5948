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
from idp_mcp.core.sessions import BrowserSession
from idp_mcp.core.setup_codes import code_required
from idp_mcp.domain import SCOPE_DESCRIPTIONS
from idp_mcp.errors import CsrfFailed, IdpError, InteractionExpired
from idp_mcp.oauth.consent import OPTIONAL_SCOPES, AdministratorConsent, ConsentDecision, ConsentPage
from idp_mcp.oauth.flow import AuthorizationFlow
from idp_mcp.web.session import CookieJar

HERE = Path(__file__).parent
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
        self.consent = AdministratorConsent(flow)
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
        return await run_in_threadpool(self.core.administrator_sign_in.session, self.cookies.session_id(request))

    def signed_in(self, request: Request) -> bool:
        """Whether the browser has an administrator session (what ``prompt=none`` at the MCP issuer is told); in
        the worker thread of the authorization request."""
        return self.core.administrator_sign_in.session(self.cookies.session_id(request)) is not None

    async def read_form(self, request: Request) -> dict[str, Any]:
        form = await request.form()
        self.cookies.check_csrf(request, _text(form.get("csrf_token")))
        return {key: form.getlist(key) if key == "scope" else _text(form.get(key)) for key in form}

    # --- home, sign-in, setup, sign-out ---------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        visitor = await run_in_threadpool(self.core.administrator_sign_in.visitor, self.cookies.session_id(request))
        return self.render(
            request, "home.html", user=visitor.user, mcp_url=self.mcp_url, needs_setup=visitor.needs_setup
        )

    async def sign_in_page(self, request: Request) -> Response:
        return await self._render_sign_in(request, safe_next(request.query_params.get("next")))

    async def _render_sign_in(
        self,
        request: Request,
        next_url: str,
        error: str | None = None,
        identifier: str = "",
        status: int = 200,
        needs_setup: bool | None = None,
    ) -> Response:
        """``needs_setup``: whether no administrator exists, when the caller knows it already."""
        if needs_setup is None:
            needs_setup = not await run_in_threadpool(self.core.users.administrators_exist)
        return self.render(
            request, "sign_in.html", status=status, next_url=next_url, error=error, identifier=identifier,
            needs_setup=needs_setup, setup_url=f"/setup?next={quote(next_url)}",
        )  # fmt: skip

    async def sign_in_submit(self, request: Request) -> Response:
        try:
            form = await self.read_form(request)
        except CsrfFailed as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        next_url = safe_next(form.get("next"))
        identifier = (form.get("identifier") or "")[:MAX_FIELD]
        device = self.cookies.device_for_sign_in(request)  # this browser becomes a known device of the user
        try:
            signed_in = await run_in_threadpool(
                lambda: self.core.administrator_sign_in.sign_in(
                    identifier, (form.get("password") or "")[:MAX_FIELD], client_address=client_host(request),
                    device=self.cookies.device_id(request), session_device=device,
                )
            )  # fmt: skip
        except IdpError as exc:
            return await self._render_sign_in(request, next_url, exc.message, identifier, status=exc.status)
        return self._with_session(RedirectResponse(next_url, status_code=303), signed_in.session, device)

    def _with_session(self, response: Response, session: str, device: str) -> Response:
        """The cookies of a session that just started, on ``response``."""
        self.cookies.set_session(response, session, None)
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
        code = (form.get("setup_code") or "")[:MAX_FIELD] if self._setup_code_required(request) else None
        device = self.cookies.device_for_sign_in(request)
        try:
            signed_in = await run_in_threadpool(
                lambda: self.core.administrator_sign_in.set_up(
                    email, (form.get("password") or "")[:MAX_FIELD], (form.get("password_confirm") or "")[:MAX_FIELD],
                    setup_code=code, session_device=device,
                )
            )  # fmt: skip
        except IdpError as exc:
            return self._render_setup(request, next_url, email=email, error=exc.message, status=exc.status)
        return self._with_session(RedirectResponse(next_url, status_code=303), signed_in.session, device)

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

    async def interaction_page(self, request: Request) -> Response:
        interaction_id, session_id = request.path_params["id"], self.cookies.session_id(request)
        try:
            found = await run_in_threadpool(self.consent.page, interaction_id, session_id)
            if found.client_due:  # its metadata document is due again: fetched on the event loop, not in a thread
                await self.flow.server.prefetch_client(found.client_due)
                found = await run_in_threadpool(
                    lambda: self.consent.page(interaction_id, session_id, client_fetched=True)
                )
        except InteractionExpired as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        if found.interaction is None:
            return await self.error_page(request, "interaction.expired", EXPIRED, 410)
        if found.session is None:
            return await self._render_sign_in(request, request.url.path, needs_setup=found.needs_setup)
        return self._render_consent(request, found)

    def _render_consent(self, request: Request, page: ConsentPage, error: str | None = None) -> Response:
        consent, interaction = page.consent, page.interaction
        assert consent is not None and interaction is not None
        scopes = [
            {"name": s, "description": SCOPE_DESCRIPTIONS.get(s, s), "optional": s in OPTIONAL_SCOPES}
            for s in consent.scopes
        ]
        return self.render(
            request, "consent.html", consent=consent, client=consent.client, user=page.user, scopes=scopes,
            tenants=list(page.memberships), interaction_id=interaction.id, error=error,
            redirect_host=urlsplit(consent.redirect_uri).netloc or consent.redirect_uri.split(":", 1)[0] + ":",
        )  # fmt: skip

    async def consent_submit(self, request: Request) -> Response:
        try:
            form = await self.read_form(request)
        except CsrfFailed as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        interaction_id, session_id = request.path_params["id"], self.cookies.session_id(request)

        def decide(client_fetched: bool = False) -> ConsentDecision:
            return self.consent.decide(
                interaction_id, session_id, approve=form.get("action") == "approve", tenant_id=form.get("tenant"),
                ticked=form.get("scope") or [], client_fetched=client_fetched,
            )  # fmt: skip

        try:
            decision = await run_in_threadpool(decide)
            if decision.page.client_due:  # as on the page: the document is fetched on the event loop first
                await self.flow.server.prefetch_client(decision.page.client_due)
                decision = await run_in_threadpool(decide, True)
        except InteractionExpired as exc:
            return await self.error_page(request, exc.code, exc.message, exc.status)
        if decision.location is not None:
            return RedirectResponse(decision.location, status_code=303)
        found = decision.page
        if found.interaction is None:
            return await self.error_page(
                request, "interaction.expired", "This sign-in request expired. Start again from your app.", 410
            )
        if found.session is None:
            return await self._render_sign_in(
                request, f"/interaction/{found.interaction.id}", needs_setup=found.needs_setup
            )
        return self._render_consent(request, found, decision.error)


def _text(value: Any) -> str | None:
    # A value holding NUL counts as not sent: no browser sends one, and PostgreSQL refuses NUL in text.
    return value if isinstance(value, str) and "\x00" not in value else None
