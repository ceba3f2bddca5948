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

from idp_mcp.core.connectors import Connector, ConnectorNotFound, PendingLogin, UpstreamProfile
from idp_mcp.core.console import TenantAdministrator
from idp_mcp.core.mfa import AMR_FEDERATED
from idp_mcp.core.sessions import Interaction
from idp_mcp.core.sign_in import InteractionPage
from idp_mcp.domain import Actor, Tenant, User
from idp_mcp.errors import IdpError
from idp_mcp.oauth.tenants import TenantProvider
from idp_mcp.oauth.upstream import UpstreamSignIn, connector_callback_url
from idp_mcp.settings import Settings
from idp_mcp.store.transaction_tally import apart
from idp_mcp.web.console import Console
from idp_mcp.web.hosted import HostedPages, NextStep
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
        hosted.home_realm = self.go_upstream  # an email of an enterprise connector's domain goes to its provider

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
        """The "Continue with …" button of the hosted page: one transaction (the interaction, the connector and the
        sign-in sent upstream), then the provider's discovery document, fetched outside it."""
        posted = await self.hosted.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, form = posted
        tenant_id = provider.tenant_id
        connector_id = request.path_params["connector"][:64]

        def begin() -> tuple[Interaction | None, Connector | None, PendingLogin | IdpError | None]:
            with self.core.db.unit_of_work(writes=True):
                interaction = self.hosted.interaction_sync(provider, form.get("interaction") or "")
                if interaction is None:
                    return None, None, None
                try:
                    connector = self.core.connectors.get(tenant_id, connector_id)
                except ConnectorNotFound as exc:
                    return interaction, None, exc
                try:
                    return interaction, *self.core.connectors.start_login(tenant_id, connector_id, interaction.id)
                except IdpError as exc:  # not usable yet: nothing written
                    return interaction, connector, exc

        interaction, connector, login = await run_in_threadpool(begin)
        if interaction is None:
            return await self.pages.error_page(request, "interaction.expired", EXPIRED, 410)
        if connector is None:
            assert isinstance(login, IdpError)
            return await self.pages.error_page(request, login.code, "This sign-in method no longer exists.", 404)
        if isinstance(login, IdpError):
            return await self._not_now(request, connector, login)
        assert login is not None
        return await self.go_upstream(request, provider, connector, login)

    async def go_upstream(
        self, request: Request, provider: TenantProvider, connector: Connector, login: PendingLogin
    ) -> Response:
        """Send the browser to the connector's provider, for the sign-in ``login`` started (also for home-realm
        discovery by email domain): the discovery document is fetched here, outside any transaction. When it cannot
        be, the sign-in written already is never used (its state reaches no browser) and expires."""
        tenant_id = provider.tenant_id
        try:
            endpoints = await self.upstream.endpoints(connector)
        except IdpError as exc:
            return await self._not_now(request, connector, exc)
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

    async def _not_now(self, request: Request, connector: Connector, exc: IdpError) -> Response:
        logger.info("connector %s could not start a sign-in: %s", connector.id, exc.code)
        return await self.pages.error_page(
            request, exc.code,
            f"Signing in with {connector.label} is not possible right now: {exc.message} Try again later or "
            "sign in another way.",
            502 if exc.status >= 500 else exc.status,
        )  # fmt: skip

    # --- coming back --------------------------------------------------------------------------------------------

    async def callback(self, request: Request) -> Response:
        """The provider's answer. Two transactions around the upstream fetches (token, JWKS, userinfo), which hold
        none: first the connector, the sign-in the state was made for (used up), its client secret and the page's
        data; then the user found, linked or created, and signed in (session, code for the application)."""
        provider = await self.hosted.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", NOT_FOUND, 404)
        tenant_id = provider.tenant_id
        connector_id = request.path_params["connector"][:64]
        params = request.query_params
        state = (params.get("state") or "")[:MAX_FIELD]
        cookie = request.cookies.get(self._cookie(tenant_id)) or ""
        # The sign-in the state was made for is used up only when the browser's cookie matches it.
        matches = bool(state and cookie and hmac.compare_digest(state.encode(), cookie.encode()))

        def come_back() -> tuple[Connector, PendingLogin | None, str | None, InteractionPage | None]:
            with self.core.db.unit_of_work(writes=matches):
                connector, login, secret = self.core.connectors.come_back(
                    tenant_id, connector_id, state if matches else None
                )
                if login is None:
                    return connector, None, None, None
                found = self.core.hosted_sign_in.interaction_page(tenant_id, login.interaction_id, None)
                return connector, login, secret, found

        try:
            connector, login, secret, found = await run_in_threadpool(come_back)
        except ConnectorNotFound as exc:
            return await self.pages.error_page(request, exc.code, "This sign-in method no longer exists.", 404)
        except IdpError as exc:
            await self._record_failure(tenant_id, connector_id, "state_reused")
            return await self._end(request, tenant_id, exc.code, exc.message, exc.status)
        if login is None or found is None:
            await self._record_failure(tenant_id, connector_id, "state_mismatch")
            return await self._end(
                request, tenant_id, "connector.state_mismatch",
                f"This answer from {connector.label} does not belong to a sign-in started in this browser, so it was "
                "not used. Go back to the application and sign in again.", 400,
            )  # fmt: skip
        interaction = found.interaction
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
            return await self._back_to_sign_in(request, found, message + " Try again or choose another way.")
        code = params.get("code") or ""
        if not code or len(code) > 2048:
            return await self._end(
                request, tenant_id, "connector.sign_in_failed", f"{connector.label} sent no code.", 400
            )
        device = self.hosted.cookies.device_for_sign_in(request)
        previous = self.hosted.cookies.mfa_pending(request, tenant_id)

        def sign_in(profile: UpstreamProfile) -> NextStep:
            # One transaction: the user (found, linked or created), the session and the code for the application.
            with self.core.db.unit_of_work(writes=True):
                signed_in = self.core.connectors.resolve_user(tenant_id, connector_id, profile)
                return self.hosted.first_factor_done_sync(
                    provider, interaction, signed_in.user.id, (AMR_FEDERATED,), device=device,
                    previous_pending=previous,
                )  # fmt: skip

        try:
            endpoints = await self.upstream.endpoints(connector)
            profile = await self.upstream.profile(
                connector, endpoints, code=code, login=login, client_secret=secret,
                redirect_uri=connector_callback_url(self.settings, tenant_id, connector.id),
            )  # fmt: skip
            step = await run_in_threadpool(sign_in, profile)
        except IdpError as exc:
            logger.info("sign-in through connector %s failed: %s", connector_id, exc.code)
            await self._record_failure(tenant_id, connector_id, exc.code)
            return await self._end(request, tenant_id, exc.code, exc.message, exc.status)
        response = await self.hosted.respond(request, provider, interaction, step, device)
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

    async def _back_to_sign_in(self, request: Request, found: InteractionPage, message: str) -> Response:
        """The sign-in page again, from the page data read with the state."""
        tenant_id, interaction = found.page.tenant.id, found.interaction
        assert interaction is not None
        response = await self.hosted.view.sign_in(
            request, tenant_id, interaction_id=interaction.id, application=found.application, error=message,
            status=400, page=found.page,
        )  # fmt: skip
        response.delete_cookie(self._cookie(tenant_id), path="/", secure=self.secure, httponly=True, samesite="lax")
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
