"""Sign-in through connectors on a tenant's hosted page, and the console page where a person sets a connector's
client secret.

The trip upstream: the "Continue with …" button (or an email address of an enterprise connector's domain) starts a
sign-in, remembered by the core with a one-time ``state``, a ``nonce`` and a PKCE verifier; the browser gets the
``state`` in a cookie too, so a callback carried to another browser (login CSRF) is refused. The callback checks the
cookie, uses up the ``state``, exchanges the code, checks what the upstream proves (``oauth.upstream``), lets the
core find, link or create the user, and then finishes the authorization request exactly as a password sign-in does.
Every failure ends on a page that says what happened, with nothing created.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.connectors import Connector, ConnectorNotFound
from idp_mcp.core.console import TenantAdministrator
from idp_mcp.core.mfa import AMR_FEDERATED
from idp_mcp.core.sessions import Interaction
from idp_mcp.domain import Actor, Tenant, User
from idp_mcp.errors import IdpError
from idp_mcp.oauth.tenants import TenantProvider
from idp_mcp.oauth.upstream import UpstreamSignIn, connector_callback_url
from idp_mcp.settings import Settings
from idp_mcp.store.transaction_tally import apart
from idp_mcp.web.console import Console
from idp_mcp.web.hosted import HostedPages
from idp_mcp.web.hosted_experience import NOT_FOUND
from idp_mcp.web.pages import EXPIRED, MAX_FIELD

logger = logging.getLogger(__name__)

STATE_COOKIE_MAX_AGE = 600
SECRET_LINK_INVALID = (
    "This link to set the connector's secret expired or is not valid. Ask the agent for a new one (getConnector "
    "returns a fresh secretUrl)."
)


def secret_page_path(tenant_id: str, connector_id: str) -> str:
    return f"/console/t/{quote(tenant_id, safe='')}/connectors/{quote(connector_id, safe='')}/secret"


class ConnectorPages:
    def __init__(self, hosted: HostedPages, console: Console, upstream: UpstreamSignIn, settings: Settings) -> None:
        self.hosted = hosted
        self.console = console
        self.pages = hosted.pages
        self.core = hosted.core
        self.upstream = upstream
        self.settings = settings
        self.secure = settings.is_https
        hosted.home_realm = self.home_realm  # the hosted sign-in form asks here before checking a password

    def routes(self) -> list[BaseRoute]:
        secret = "/console/t/{tenant}/connectors/{connector}/secret"
        return [
            Route("/t/{tenant}/connectors/{connector}/start", self.start, methods=["POST"]),
            Route("/t/{tenant}/oidc/connectors/{connector}/callback", self.callback, methods=["GET"]),
            Route(secret, self.console._page(self.secret_page), methods=["GET"]),
            Route(secret, self.console._page(self.secret_submit), methods=["POST"]),
        ]

    # --- going upstream -----------------------------------------------------------------------------------------

    def _cookie(self, tenant_id: str) -> str:
        return f"{'__Host-' if self.secure else ''}idp_upstream_{tenant_id}"

    async def start(self, request: Request) -> Response:
        """The "Continue with …" button of the hosted page."""
        found = await self.hosted.interaction_form(request)
        if isinstance(found, Response):
            return found
        provider, interaction, _ = found
        return await self.go_upstream(request, provider, interaction, request.path_params["connector"][:64])

    async def go_upstream(
        self, request: Request, provider: TenantProvider, interaction: Interaction, connector_id: str
    ) -> Response:
        """Send the browser to the connector's provider, for this authorization request (also used for home-realm
        discovery by email domain)."""
        tenant_id = provider.tenant_id
        try:
            connector = await run_in_threadpool(self.core.connectors.get, tenant_id, connector_id)
        except ConnectorNotFound as exc:
            return await self.pages.error_page(request, exc.code, "This sign-in method no longer exists.", 404)
        try:
            endpoints = await self.upstream.endpoints(connector)
            connector, login = await run_in_threadpool(
                self.core.connectors.start_login, tenant_id, connector_id, interaction.id
            )
        except IdpError as exc:
            logger.info("connector %s could not start a sign-in: %s", connector_id, exc.code)
            return await self.pages.error_page(
                request, exc.code,
                f"Signing in with {connector.label} is not possible right now: {exc.message} Try again later or "
                "sign in another way.",
                502 if exc.status >= 500 else exc.status,
            )  # fmt: skip
        location = self.upstream.authorization_url(
            connector, endpoints, login, connector_callback_url(self.settings, tenant_id, connector.id)
        )
        response = RedirectResponse(location, status_code=303)
        # Lax: the upstream sends the browser back with a top-level GET, which carries it.
        response.set_cookie(
            self._cookie(tenant_id), login.state, max_age=STATE_COOKIE_MAX_AGE, httponly=True, secure=self.secure,
            samesite="lax", path="/",
        )  # fmt: skip
        return response

    async def home_realm(
        self, request: Request, provider: TenantProvider, interaction: Interaction, identifier: str
    ) -> Response | None:
        """Home-realm discovery: an email address of an enterprise connector's domain goes to that provider."""
        if "@" not in identifier:
            return None
        connector = await run_in_threadpool(self.core.connectors.for_email, provider.tenant_id, identifier)
        if connector is None:
            return None
        return await self.go_upstream(request, provider, interaction, connector.id)

    # --- coming back --------------------------------------------------------------------------------------------

    async def callback(self, request: Request) -> Response:
        provider = await self.hosted.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", NOT_FOUND, 404)
        tenant_id = provider.tenant_id
        connector_id = request.path_params["connector"][:64]
        params = request.query_params
        state = (params.get("state") or "")[:MAX_FIELD]
        cookie = request.cookies.get(self._cookie(tenant_id)) or ""
        # One transaction: the connector, and the sign-in the state was made for (used up) when the cookie matches.
        matches = bool(state and cookie and hmac.compare_digest(state.encode(), cookie.encode()))
        try:
            connector, login, secret = await run_in_threadpool(
                self.core.connectors.come_back, tenant_id, connector_id, state if matches else None
            )
        except ConnectorNotFound as exc:
            return await self.pages.error_page(request, exc.code, "This sign-in method no longer exists.", 404)
        except IdpError as exc:
            await self._record_failure(tenant_id, connector_id, "state_reused")
            return await self._end(request, tenant_id, exc.code, exc.message, exc.status)
        if login is None:
            await self._record_failure(tenant_id, connector_id, "state_mismatch")
            return await self._end(
                request, tenant_id, "connector.state_mismatch",
                f"This answer from {connector.label} does not belong to a sign-in started in this browser, so it was "
                "not used. Go back to the application and sign in again.", 400,
            )  # fmt: skip
        interaction = await self.hosted.interaction(provider, login.interaction_id)
        if interaction is None:
            return await self._end(request, tenant_id, "interaction.expired", EXPIRED, 410)
        error = params.get("error")
        if error:
            await self._record_failure(tenant_id, connector_id, error[:64])
            message = (
                f"Signing in with {connector.label} was cancelled."
                if error == "access_denied"
                else f"{connector.label} could not sign you in ({error[:64]})."
            )
            return await self._back_to_sign_in(
                request, provider, interaction, message + " Try again or choose another way."
            )
        code = params.get("code") or ""
        if not code or len(code) > 2048:
            return await self._end(
                request, tenant_id, "connector.sign_in_failed", f"{connector.label} sent no code.", 400
            )
        try:
            endpoints = await self.upstream.endpoints(connector)
            profile = await self.upstream.profile(
                connector, endpoints, code=code, login=login, client_secret=secret,
                redirect_uri=connector_callback_url(self.settings, tenant_id, connector.id),
            )  # fmt: skip
            signed_in = await run_in_threadpool(self.core.connectors.resolve_user, tenant_id, connector_id, profile)
        except IdpError as exc:
            logger.info("sign-in through connector %s failed: %s", connector_id, exc.code)
            await self._record_failure(tenant_id, connector_id, exc.code)
            return await self._end(request, tenant_id, exc.code, exc.message, exc.status)
        response = await self.hosted.sign_user_in(request, provider, interaction, signed_in.user, (AMR_FEDERATED,))
        response.delete_cookie(self._cookie(tenant_id), path="/", secure=self.secure, httponly=True, samesite="lax")
        return response

    async def _record_failure(self, tenant_id: str, connector_id: str, reason: str) -> None:
        # The audit row of a refused callback, in a transaction of its own: the sign-in it records did not happen.
        with apart("the audit row of a failed upstream sign-in"):
            await run_in_threadpool(self.core.connectors.record_failure, tenant_id, connector_id, reason)

    async def _end(self, request: Request, tenant_id: str, code: str, message: str, status: int) -> Response:
        response = await self.pages.error_page(request, code, message, status)
        response.delete_cookie(self._cookie(tenant_id), path="/", secure=self.secure, httponly=True, samesite="lax")
        return response

    async def _back_to_sign_in(
        self, request: Request, provider: TenantProvider, interaction: Interaction, message: str
    ) -> Response:
        response = await self.hosted._render_sign_in(request, provider, interaction, error=message, status=400)
        response.delete_cookie(
            self._cookie(provider.tenant_id), path="/", secure=self.secure, httponly=True, samesite="lax"
        )
        return response

    # --- the console page for the client secret -----------------------------------------------------------------

    def _link_ok(self, request: Request, tenant_id: str, connector_id: str) -> bool:
        expires = request.query_params.get("expires") or ""
        signature = request.query_params.get("sig") or ""
        return self.core.connectors.check_secret_link(tenant_id, connector_id, expires, signature)

    def _linked_connector(self, request: Request, tenant_id: str) -> Connector:
        """The connector of a valid link only (in the caller's unit of work)."""
        connector_id = request.path_params["connector"][:64]
        if not self._link_ok(request, tenant_id, connector_id):
            raise LinkInvalid(SECRET_LINK_INVALID)
        return self.core.connectors.get(tenant_id, connector_id)

    async def secret_page(self, request: Request) -> Response:
        """The form, for an administrator of the tenant (else 403) holding a valid link: one read."""
        access, connector = await self.console._as_admin(
            request, lambda a: self._linked_connector(request, a.tenant.id), next_url=self._next_url(request)
        )
        return self._render_secret(request, access.user, access.tenant, connector)

    async def secret_submit(self, request: Request) -> Response:
        """Set the secret: CSRF first, then the same checks as the form and the change, in one transaction."""
        form = await self.pages.read_form(request)
        secret = str(form.get("clientSecret") or "")[:2048]

        def submit(access: TenantAdministrator) -> tuple[Connector, IdpError | None]:
            connector = self._linked_connector(request, access.tenant.id)
            try:
                actor = Actor(tenant_id=connector.tenant_id, sub=access.user.id)  # the human in the browser
                return self.core.connectors.set_secret(connector.tenant_id, connector.id, secret, actor), None
            except IdpError as exc:  # rolled back (its savepoint): the form again, with the sentence
                return connector, exc

        access, (connector, refused) = await self.console._as_admin(
            request, submit, next_url=self._next_url(request), writes=True
        )
        if refused is not None:
            return self._render_secret(
                request, access.user, access.tenant, connector, error=refused.message, status=refused.status
            )
        return self._render_secret(request, access.user, access.tenant, connector, saved=True)

    @staticmethod
    def _next_url(request: Request) -> str:
        return f"{request.url.path}?{request.url.query}"

    def _render_secret(
        self, request: Request, user: User, tenant: Tenant, connector: Connector, *, error: str | None = None,
        saved: bool = False, status: int = 200,
    ) -> Response:  # fmt: skip
        query = urlencode(
            {"expires": request.query_params.get("expires", ""), "sig": request.query_params.get("sig", "")}
        )
        response = self.pages.render(
            request, "console/connector_secret.html", status=status, user=user, tenant=tenant, connector=connector,
            action=f"{secret_page_path(connector.tenant_id, connector.id)}?{query}", error=error, saved=saved,
            callback_url=connector_callback_url(self.settings, connector.tenant_id, connector.id),
            applications_url=f"/console/t/{quote(connector.tenant_id, safe='')}/applications",
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"
        return response


class LinkInvalid(IdpError):
    code = "connector.secret_link_invalid"
    status = 403
