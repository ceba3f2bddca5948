"""The hosted sign-in page of each tenant, and RP-initiated logout. The policy (what the user must do, what
the client gets) lives in the authorization flow; this module renders and relays."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.mfa import AMR_PASSWORD, PENDING_TTL, MfaDecision, acr_for_request
from idp_mcp.core.sessions import BrowserSession, Interaction
from idp_mcp.domain import SCOPE_DESCRIPTIONS, SCOPE_OPENID, User, as_utc
from idp_mcp.errors import CsrfFailed, IdpError, InteractionExpired, TenantNotFound
from idp_mcp.oauth.tenants import TenantProvider, TenantProviders
from idp_mcp.web.hosted_experience import NOT_FOUND, ExperienceView
from idp_mcp.web.pages import EXPIRED, MAX_FIELD, Pages, client_host

if TYPE_CHECKING:  # web/mfa.py builds on this module; only the type is needed here
    from idp_mcp.web.mfa import MfaPages

LOGOUT_FIELDS = ("client_id", "post_logout_redirect_uri", "state", "ui_locales")  # carried through confirmation
MAX_LOGOUT_FIELD = 8192  # an id_token_hint is a JWT: longer than the page fields


class HostedPages:
    def __init__(self, pages: Pages, providers: TenantProviders) -> None:
        self.pages = pages
        self.providers = providers
        self.core = pages.core
        self.cookies = pages.cookies
        self.view = ExperienceView(pages)  # the tenant's branding and sign-in methods
        # Set by the connector pages: sends an email address of an enterprise connector's domain to its provider.
        self.home_realm: Callable[[Request, TenantProvider, Interaction, str], Awaitable[Response | None]] | None = None
        self.mfa_pages: MfaPages | None = None  # the second-factor pages set themselves here (web/mfa.py)
        # Set by the passkey pages: after a sign-in, may offer to add a passkey before going on to the application.
        self.offer_passkey: Callable[[TenantProvider, Interaction, str], Awaitable[Response | None]] | None = None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/t/{tenant}/interaction/{id}", self.interaction_page, methods=["GET"]),
            Route("/t/{tenant}/sign-in", self.sign_in_submit, methods=["POST"]),
            Route("/t/{tenant}/interaction/{id}/consent", self.consent_submit, methods=["POST"]),
            Route("/t/{tenant}/oidc/end-session", self.end_session, methods=["GET", "POST"]),
        ]

    async def provider(self, request: Request) -> TenantProvider | None:
        try:
            return await run_in_threadpool(self.providers.get, request.path_params["tenant"])
        except TenantNotFound:
            return None

    async def interaction(self, provider: TenantProvider, interaction_id: str) -> Interaction | None:
        interaction = await run_in_threadpool(self.core.sessions.get_interaction, interaction_id[:MAX_FIELD])
        return interaction if interaction and interaction.tenant_id == provider.tenant_id else None

    async def interaction_form(self, request: Request) -> tuple[TenantProvider, Interaction, dict[str, Any]] | Response:
        """For a POST to a hosted page: the tenant, the pending interaction its ``interaction`` field names and the
        CSRF-checked form; or the error page to show (unknown tenant, bad CSRF token, expired interaction)."""
        provider = await self.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", NOT_FOUND, 404)
        try:
            form = await self.pages.read_form(request)
        except CsrfFailed as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)
        interaction = await self.interaction(provider, form.get("interaction") or "")
        if interaction is None:
            return await self.pages.error_page(request, "interaction.expired", EXPIRED, 410)
        return provider, interaction, form

    async def _session(self, request: Request, tenant_id: str) -> BrowserSession | None:
        session = await run_in_threadpool(self.core.sessions.get, self.cookies.session_id(request, tenant_id))
        return session if session and session.tenant_id == tenant_id else None

    async def _render_sign_in(
        self, request: Request, provider: TenantProvider, interaction: Interaction, *, error: str | None = None,
        identifier: str = "", status: int = 200,
    ) -> Response:  # fmt: skip
        client = await run_in_threadpool(self.core.clients.get, provider.tenant_id, interaction.client_id)
        return await self.view.sign_in(
            request, provider.tenant_id, interaction_id=interaction.id, application=client.name if client else None,
            error=error, identifier=identifier, status=status,
        )  # fmt: skip

    async def _complete(
        self, request: Request, provider: TenantProvider, interaction: Interaction, session: BrowserSession
    ) -> Response:
        """Once the user is signed in: first-party applications get what they asked for; a third-party one
        needs the user's consent, asked once per set of scopes."""
        try:
            consent = await run_in_threadpool(provider.flow.describe, interaction)
            third_party = bool(consent.client.metadata.get("third_party"))
            if third_party and not await run_in_threadpool(
                self.core.grants.has_consent, provider.tenant_id, session.user_id, consent.client.client_id,
                consent.scopes,
            ):  # fmt: skip
                return await self._render_consent(
                    request, provider, interaction, consent.client.name, consent.scopes, consent.permissions
                )
            location = await self._approve(provider, interaction, session, consent.scopes)
        except InteractionExpired as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)
        return RedirectResponse(location, status_code=303)

    async def _approve(
        self, provider: TenantProvider, interaction: Interaction, session: BrowserSession, scopes: list[str]
    ) -> str:
        """Issue the code for what the application asked; returns where to send the browser."""
        return await run_in_threadpool(
            lambda: provider.flow.approve(
                interaction, user_id=session.user_id, auth_time=session.auth_time, scopes=scopes,
                acting_tenant_id=None, amr=session.amr, acr=acr_for_request(session.acr, interaction.params),
            )
        )  # fmt: skip

    async def _render_consent(
        self, request: Request, provider: TenantProvider, interaction: Interaction, client_name: str, scopes: list[str],
        permissions: tuple[tuple[str, str, str], ...] = (),
    ) -> Response:  # fmt: skip
        tenant = await run_in_threadpool(self.core.tenants.get, provider.tenant_id)
        # API permissions are named with their API and description; the others are OpenID scopes.
        api_permissions = {name for _, name, _ in permissions}
        described = [
            SCOPE_DESCRIPTIONS.get(scope, scope)
            for scope in scopes
            if scope != SCOPE_OPENID and scope not in api_permissions
        ]
        described += [f"{api}: {description or name} ({name})" for api, name, description in permissions]
        return self.pages.render(
            request, "hosted_consent.html", tenant=tenant, client_name=client_name, scopes=described,
            interaction_id=interaction.id,
        )  # fmt: skip

    async def consent_submit(self, request: Request) -> Response:
        provider = await self.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", "This sign-in page does not exist.", 404)
        try:
            form = await self.pages.read_form(request)
        except CsrfFailed as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)
        interaction = await self.interaction(provider, request.path_params["id"])
        if interaction is None:
            return await self.pages.error_page(request, "interaction.expired", EXPIRED, 410)
        session = await self._session(request, provider.tenant_id)
        if session is None:
            return await self._render_sign_in(request, provider, interaction)
        if form.get("action") == "approve":
            second = await self.second_factor_needed(request, provider, interaction, session)
            if second is not None:
                return second
        try:
            if form.get("action") != "approve":
                location = await run_in_threadpool(provider.flow.deny, interaction)
            else:
                consent = await run_in_threadpool(provider.flow.describe, interaction)
                location = await self._approve(provider, interaction, session, consent.scopes)
        except InteractionExpired as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)
        return RedirectResponse(location, status_code=303)

    async def interaction_page(self, request: Request) -> Response:
        tenant_id = request.path_params["tenant"]
        try:  # one hop, one read transaction: tenant, experience, interaction, application, session
            found = await run_in_threadpool(
                self.core.hosted_sign_in.interaction_page, tenant_id, request.path_params["id"],
                self.cookies.session_id(request, tenant_id),
            )  # fmt: skip
        except TenantNotFound:
            return await self.pages.error_page(request, "tenant.not_found", "This sign-in page does not exist.", 404)
        interaction = found.interaction
        if interaction is None:
            return await self.pages.error_page(request, "interaction.expired", EXPIRED, 410)
        prompts = " ".join(interaction.params.get("prompt", [])).split()
        if found.session is None or "login" in prompts or self._too_old(found.session, interaction):
            return await self.view.sign_in(
                request, tenant_id, interaction_id=interaction.id, application=found.application, page=found.page
            )
        provider = await self.provider(request)  # signed in already: the flow decides what comes next
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", "This sign-in page does not exist.", 404)
        session = found.session
        second = await self.second_factor_needed(request, provider, interaction, session)
        if second is not None:
            return second
        return await self._complete(request, provider, interaction, session)

    async def second_factor_needed(
        self, request: Request, provider: TenantProvider, interaction: Interaction, session: BrowserSession
    ) -> Response | None:
        """Where to go when an existing session is not enough for this request (the policy changed since it
        started, or the application asks for MFA now: step-up); None when it is. Every path that approves a
        request with an existing session asks here first."""
        try:
            decision = await run_in_threadpool(self.core.mfa.for_session, provider.tenant_id, interaction.id, session)
        except IdpError as exc:  # required, and nothing the user can set up here
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)
        if decision.outcome != "complete":
            return self._to_second_factor(provider, interaction, decision)
        return None

    def _too_old(self, session: BrowserSession, interaction: Interaction) -> bool:
        """OIDC Core §3.1.2.1 max_age: the user signs in again when the session's sign-in is older."""
        values = interaction.params.get("max_age") or []
        raw = values[0] if isinstance(values, list) and values else values
        if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 10:
            return False
        return (self.core.clock() - as_utc(session.auth_time)).total_seconds() > int(raw)

    async def sign_in_submit(self, request: Request) -> Response:
        found = await self.interaction_form(request)
        if isinstance(found, Response):
            return found
        provider, interaction, form = found
        identifier = (form.get("identifier") or "")[:MAX_FIELD]
        if self.home_realm is not None:
            upstream = await self.home_realm(request, provider, interaction, identifier.strip())
            if upstream is not None:
                return upstream
        try:
            # Only the identifiers the tenant's sign-in experience allows with a password.
            user = await self.core.hosted_sign_in.with_password(
                provider.tenant_id,
                identifier,
                (form.get("password") or "")[:MAX_FIELD],
                client_address=client_host(request),
                device=self.cookies.device_id(request),
            )
        except IdpError as exc:
            return await self._render_sign_in(
                request, provider, interaction, error=exc.message, identifier=identifier, status=exc.status
            )
        return await self.sign_user_in(request, provider, interaction, user)

    async def sign_user_in(
        self, request: Request, provider: TenantProvider, interaction: Interaction, user: User,
        amr: tuple[str, ...] = (AMR_PASSWORD,),
    ) -> Response:  # fmt: skip
        """Every first factor ends here (``amr``: how the user proved who they are, RFC 8176): core.mfa decides
        whether the session starts now or a second factor (or its enrollment) comes first. Once the session starts,
        the browser becomes (or stays) a known device of the user and the request is finished."""
        device = self.cookies.device_for_sign_in(request)
        previous = self.cookies.mfa_pending(request, provider.tenant_id)
        try:
            decision = await run_in_threadpool(
                lambda: self.core.mfa.after_first_factor(
                    provider.tenant_id, interaction.id, user.id, amr, device=device, previous_pending=previous
                )
            )
        except IdpError as exc:  # the policy requires a factor and none can be set up
            return await self._render_sign_in(request, provider, interaction, error=exc.message, status=exc.status)
        if decision.outcome != "complete":
            return self._to_second_factor(provider, interaction, decision)
        return await self.signed_in(request, provider, interaction, decision, device)

    async def signed_in(
        self, request: Request, provider: TenantProvider, interaction: Interaction, decision: MfaDecision,
        device: str,
    ) -> Response:  # fmt: skip
        """Finish the request with the session ``decision`` started, and set its cookies."""
        assert decision.session is not None
        session = await self._session_from_raw(decision.session, provider.tenant_id)
        offer = await self.offer_passkey(provider, interaction, session.user_id) if self.offer_passkey else None
        response = offer or await self._complete(request, provider, interaction, session)
        self.cookies.set_session(response, decision.session, provider.tenant_id)
        self.cookies.set_device(response, device)
        self.cookies.clear_mfa_pending(response, provider.tenant_id)
        return response

    def _to_second_factor(self, provider: TenantProvider, interaction: Interaction, decision: MfaDecision) -> Response:
        """To the second-factor page (challenge or enrollment), with the partial sign-in's cookie."""
        assert decision.pending is not None
        response = RedirectResponse(f"/t/{provider.tenant_id}/interaction/{interaction.id}/mfa", status_code=303)
        self.cookies.set_mfa_pending(response, decision.pending, provider.tenant_id, int(PENDING_TTL.total_seconds()))
        return response

    async def _session_from_raw(self, raw: str, tenant_id: str) -> BrowserSession:
        session = await run_in_threadpool(self.core.sessions.get, raw)
        assert session is not None and session.tenant_id == tenant_id
        return session

    async def end_session(self, request: Request) -> Response:
        """RP-initiated logout: end the tenant session, then return to a registered post-logout URI.

        A request with a valid ``id_token_hint`` (signed by this tenant, for the signed-in user) proceeds at once.
        Without one anyone could sign the user out with a link or an image (logout CSRF), so the user is asked to
        confirm first (OpenID RP-Initiated Logout 1.0 §2, §6): a form posted back here with the page's CSRF token.
        """
        provider = await self.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", "This page does not exist.", 404)
        params = {k: v[:MAX_LOGOUT_FIELD] for k, v in request.query_params.items() if "\x00" not in v}
        confirmed = False
        if request.method == "POST":
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str) and "\x00" not in v})
            confirmed = params.get("confirm") == "yes"
        forged: CsrfFailed | None = None
        if confirmed:
            try:
                self.cookies.check_csrf(request, params.get("csrf_token"))
            except CsrfFailed as exc:
                forged = exc
        session_id = self.cookies.session_id(request, provider.tenant_id)
        try:
            logout = await run_in_threadpool(
                lambda: provider.flow.end_session(
                    session_id, id_token_hint=params.get("id_token_hint"), client_id=params.get("client_id"),
                    uri=params.get("post_logout_redirect_uri"), confirmed=confirmed, forged=forged,
                )
            )  # fmt: skip
        except IdpError as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)
        if logout.ask:
            return self._confirm_logout(request, provider, params)
        target = logout.target
        if target:
            state = params.get("state")
            location = f"{target}{'&' if '?' in target else '?'}{urlencode({'state': state})}" if state else target
            response: Response = RedirectResponse(location, status_code=303)
        else:
            response = self.pages.render(request, "signed_out.html")
        self.cookies.clear_session(response, provider.tenant_id)
        return response

    def _confirm_logout(self, request: Request, provider: TenantProvider, params: dict[str, str]) -> Response:
        carried = {k: params[k] for k in LOGOUT_FIELDS if params.get(k)}
        return self.pages.render(
            request, "confirm_sign_out.html", action=f"/t/{provider.tenant_id}/oidc/end-session", fields=carried
        )
